// How numbers and times read on the page.

import { serverNow } from "./api.js";

const UNITS = [
  [86400, "d"],
  [3600, "h"],
  [60, "min"],
  [1, "s"],
];

// A duration in seconds as the two largest units: "3 min 20 s".
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(+seconds)) {
    return "–";
  }
  let left = Math.max(0, Math.round(+seconds));
  if (left === 0) {
    return "0 s";
  }
  const parts = [];
  for (const [size, unit] of UNITS) {
    if (left >= size && parts.length < 2) {
      parts.push(`${Math.floor(left / size)} ${unit}`);
      left %= size;
    } else if (parts.length) {
      break;
    }
  }
  return parts.join(" ");
}

export function parseTime(iso) {
  if (!iso) {
    return null;
  }
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms : null;
}

// "12 s ago", "in 3 min", "just now".
export function relative(iso) {
  const ms = parseTime(iso);
  if (ms === null) {
    return "–";
  }
  const diff = (serverNow() - ms) / 1000;
  if (Math.abs(diff) < 2) {
    return "just now";
  }
  const span = duration(Math.abs(diff)).split(" ").slice(0, 2).join(" ");
  return diff > 0 ? `${span} ago` : `in ${span}`;
}

function pad(n) {
  return String(n).padStart(2, "0");
}

// The reader's zone as an offset from UTC: "UTC", "UTC+2", "UTC+5:30".
function zoneName(offsetMinutes) {
  if (offsetMinutes === 0) {
    return "UTC";
  }
  const sign = offsetMinutes > 0 ? "+" : "-";
  const abs = Math.abs(offsetMinutes);
  const minutes = abs % 60 ? `:${pad(abs % 60)}` : "";
  return `UTC${sign}${Math.floor(abs / 60)}${minutes}`;
}

// The exact time in the reader's zone: "2026-12-04 17:07:11 UTC".
export function exact(iso) {
  const ms = parseTime(iso);
  if (ms === null) {
    return "";
  }
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ` +
    zoneName(-d.getTimezoneOffset());
}

export function clock(iso) {
  const ms = parseTime(iso);
  if (ms === null) {
    return "";
  }
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function count(n) {
  return Number.isFinite(+n) ? Number(n).toLocaleString("en") : "–";
}

export function priorityName(p) {
  if (p >= 10) {
    return `${p} high`;
  }
  if (p <= 1) {
    return `${p} low`;
  }
  return p === 5 ? "5 normal" : String(p);
}

// Why a job with no max_attempts of its own reads "of 3".
export function defaultNote(defaultMax) {
  return `${defaultMax} is the default ([queue] worker_max_attempts), ` +
    "unless the job's handler sets max_attempts";
}

// "2 of 5"; a job with no limit of its own shows the server's default,
// once the page knows it.
export function attempts(job, defaultMax = null) {
  const own = job.max_attempts;
  const max = own === null || own === undefined ? defaultMax : own;
  return `${job.attempts} of ${max ?? "–"}`;
}

// Job data as indented JSON.
export function prettyJson(value) {
  try {
    return JSON.stringify(value, null, 2) ?? "null";
  } catch (err) {
    return String(value);
  }
}
