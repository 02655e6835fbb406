// The overview's chart: jobs completed and failed per minute over the last
// hour, as stacked bars in a hand-written SVG (no library to vendor).
//
// The bars are made once and then only resized, so a refresh every two
// seconds neither flickers nor moves the reader's hover.

import { clock, count } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 600;
const HEIGHT = 160;
const LEFT = 34;
const RIGHT = 6;
const TOP = 8;
const BOTTOM = 20;
const MINUTES = 60;

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    node.setAttribute(name, String(value));
  }
  return node;
}

// A round top for the axis: 1, 2, 5 times a power of ten.
function niceMax(value) {
  if (value <= 4) {
    return 4;
  }
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= value) {
      return step * power;
    }
  }
  return 10 * power;
}

export class MinuteChart {
  constructor(root, summary) {
    this.root = root;
    this.summary = summary;
    root.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
    this.plotW = WIDTH - LEFT - RIGHT;
    this.plotH = HEIGHT - TOP - BOTTOM;
    this.slot = this.plotW / MINUTES;

    this.grid = [];
    for (let i = 0; i < 3; i += 1) {
      const y = TOP + (this.plotH * i) / 2;
      const line = svg("line", {
        x1: LEFT, x2: WIDTH - RIGHT, y1: y, y2: y, class: "grid",
      });
      const label = svg("text", {
        x: LEFT - 4, y: y + 4, class: "axis", "text-anchor": "end",
      });
      root.append(line, label);
      this.grid.push(label);
    }
    const marks = [[0, "−60 min"], [30, "−30 min"], [59, "now"]];
    for (const [index, text] of marks) {
      const anchor = index === 0 ? "start" : index === 59 ? "end" : "middle";
      const x = index === 59 ? WIDTH - RIGHT : LEFT + index * this.slot;
      const label = svg("text", {
        x, y: HEIGHT - 5, class: "axis", "text-anchor": anchor,
      });
      label.textContent = text;
      root.append(label);
    }

    this.bars = [];
    for (let i = 0; i < MINUTES; i += 1) {
      const group = svg("g", { class: "minute" });
      const x = LEFT + i * this.slot + 1;
      const w = Math.max(1, this.slot - 2);
      // A full-height, transparent target so a hover finds thin bars.
      const hit = svg("rect", {
        x, y: TOP, width: w, height: this.plotH, class: "hit",
      });
      const ok = svg("rect", { x, y: TOP + this.plotH, width: w, height: 0,
        class: "bar-ok" });
      const failed = svg("rect", { x, y: TOP + this.plotH, width: w,
        height: 0, class: "bar-failed" });
      const title = svg("title");
      group.append(title, hit, ok, failed);
      root.append(group);
      this.bars.push({ ok, failed, title });
    }
  }

  // Draw [{minute, completed, failed}] x 60, oldest first.
  update(perMinute) {
    const rows = (perMinute || []).slice(-MINUTES);
    while (rows.length < MINUTES) {
      rows.unshift({ minute: null, completed: 0, failed: 0 });
    }
    const peak = Math.max(0, ...rows.map((r) => r.completed + r.failed));
    const top = niceMax(peak);
    this.grid.forEach((label, i) => {
      const text = count(top - (top * i) / 2);
      if (label.textContent !== text) {
        label.textContent = text;
      }
    });

    let done = 0;
    let failed = 0;
    let busiest = null;
    rows.forEach((row, i) => {
      const bar = this.bars[i];
      const okH = (row.completed / top) * this.plotH;
      const failH = (row.failed / top) * this.plotH;
      const base = TOP + this.plotH;
      setNumber(bar.ok, "y", base - okH);
      setNumber(bar.ok, "height", okH);
      setNumber(bar.failed, "y", base - okH - failH);
      setNumber(bar.failed, "height", failH);
      const when = row.minute ? clock(row.minute) : "";
      const text = `${when} ${row.completed} completed, ${row.failed} failed`;
      if (bar.title.textContent !== text) {
        bar.title.textContent = text;
      }
      done += row.completed;
      failed += row.failed;
      const total = row.completed + row.failed;
      if (total > 0 && (!busiest || total >= busiest.total)) {
        busiest = { total, when };
      }
    });

    let said = `Last hour: ${count(done)} completed, ${count(failed)} failed.`;
    if (busiest) {
      said += ` Busiest minute ${busiest.when}: ${count(busiest.total)}.`;
    }
    if (this.summary.textContent !== said) {
      this.summary.textContent = said;
    }
  }
}

function setNumber(node, name, value) {
  const text = value.toFixed(1);
  if (node.getAttribute(name) !== text) {
    node.setAttribute(name, text);
  }
}
