// The job detail dialog: every field, the data as indented JSON, the last
// error in a block of its own, and retry, cancel and delete, each asked
// for first.  Every value is written as text.

import { API, ApiError, fetchApi } from "./api.js";
import { byId, h, setText, show } from "./dom.js";
import { exact, prettyJson, priorityName, relative } from "./format.js";
import { confirmAction, toast } from "./ui.js";

const MAX_DELAY_S = 366 * 86400;

// Every field of a job, in reading order: [key, label, kind].
const FIELDS = [
  ["id", "ID", "text"],
  ["job_name", "Name", "text"],
  ["job_class", "Class", "text"],
  ["queue", "Queue", "text"],
  ["status", "Status", "status"],
  ["priority", "Priority", "priority"],
  ["attempts", "Attempts", "text"],
  ["max_attempts", "Max attempts", "max"],
  ["delay", "Delay (s)", "text"],
  ["created_at", "Created", "time"],
  ["available_at", "Available", "time"],
  ["started_at", "Started", "time"],
  ["completed_at", "Completed", "time"],
  ["failed_at", "Failed", "time"],
  ["worker_id", "Worker", "text"],
  ["leased_at", "Leased", "time"],
];

function shown(value, kind, defaultMax) {
  if (value === null || value === undefined) {
    if (kind !== "max") {
      return "–";
    }
    return defaultMax === null ? "the default (the handler's, or " +
      "[queue] worker_max_attempts)" : `${defaultMax} (the default, ` +
      "[queue] worker_max_attempts, unless the job's handler sets " +
      "max_attempts)";
  }
  if (kind === "time") {
    return `${exact(value)} (${relative(value)})`;
  }
  if (kind === "priority") {
    return priorityName(value);
  }
  return String(value);
}

export class Detail {
  constructor(ctx) {
    this.ctx = ctx;
    this.job = null;
    this.id = null;
    this.opener = null;
    this.dialog = byId("job-dialog");
    this.values = new Map();
    const list = byId("job-fields");
    for (const [key, label] of FIELDS) {
      const dd = h("dd", { id: `job-${key.replaceAll("_", "-")}-value` });
      list.append(h("div", { class: "field" }, h("dt", {}, label), dd));
      this.values.set(key, dd);
    }
    byId("job-close").addEventListener("click", () => this.close());
    this.dialog.addEventListener("close", () => this.closed());
    byId("retry-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.retry();
    });
    byId("job-cancel").addEventListener("click", () => this.cancel());
    byId("job-delete").addEventListener("click", () => this.remove());
  }

  async open(id, opener = null) {
    this.opener = opener;
    try {
      const job = await fetchApi(`${API}/job`, { id });
      this.id = id;
      this.render(job);
      byId("retry-delay").value = "";
      if (!this.dialog.open) {
        this.dialog.showModal();
      }
      byId("job-close").focus();
    } catch (err) {
      this.ctx.fail(err, `Job ${id}`);
    }
  }

  close() {
    if (this.dialog.open) {
      this.dialog.close();
    }
  }

  closed() {
    this.id = null;
    this.job = null;
    if (this.opener && this.opener.isConnected) {
      this.opener.focus();
    }
    this.opener = null;
  }

  async refresh() {
    if (this.id === null || !this.dialog.open) {
      return;
    }
    const id = this.id;
    try {
      const job = await fetchApi(`${API}/job`, { id });
      if (this.id === id) {
        this.render(job);
      }
    } catch (err) {
      if (err instanceof ApiError && err.status === 404 && this.id === id) {
        this.gone();
        return;
      }
      throw err;
    }
  }

  render(job) {
    this.job = job;
    setText(byId("job-title-id"), `#${job.id}`);
    show(byId("job-gone"), false);
    const defaultMax = this.ctx.defaultMax();
    for (const [key, , kind] of FIELDS) {
      const dd = this.values.get(key);
      setText(dd, shown(job[key], kind, defaultMax));
      if (kind === "status") {
        dd.className = `status-text status-${job.status}`;
      }
    }
    setText(byId("job-data"), prettyJson(job.job_data));
    const error = byId("job-error");
    setText(error, job.last_error || "No error recorded.");
    error.classList.toggle("empty", !job.last_error);
    this.showActions(job.status);
  }

  // Draw the open job again, when the default max_attempts becomes known.
  redraw() {
    if (this.job !== null && this.dialog.open) {
      this.render(this.job);
    }
  }

  showActions(status) {
    const retry = this.ctx.can("operator") &&
      ["failed", "completed"].includes(status);
    const cancel = this.ctx.can("operator") &&
      ["pending", "processing"].includes(status);
    const remove = this.ctx.can("admin") && status !== "gone";
    show(byId("retry-form"), retry);
    show(byId("job-cancel"), cancel);
    show(byId("job-delete"), remove);
    show(byId("job-actions"), retry || cancel || remove);
  }

  gone() {
    show(byId("job-gone"), true);
    this.showActions("gone");
  }

  async act(title, text, verb, call, done, what, needed,
    destructive = true) {
    const id = this.id;
    if (id === null ||
        !(await confirmAction(title, text, verb, destructive))) {
      return;
    }
    try {
      await call(id);
      toast(done(id));
    } catch (err) {
      this.ctx.fail(err, what(id), needed);
    }
    this.ctx.refreshSoon();
  }

  retry() {
    const input = byId("retry-delay");
    const raw = input.value.trim();
    const delay = raw === "" ? 0 : Number(raw);
    if (!Number.isFinite(delay) || delay < 0 || delay > MAX_DELAY_S) {
      toast("The delay is a number of seconds from 0 to 31622400.",
        "error");
      input.focus();
      return;
    }
    const when = delay > 0 ? ` in ${delay} s` : " now";
    this.act(`Retry job #${this.id}?`,
      `It goes back to pending with its attempts reset and runs${when}.`,
      "Retry",
      (id) => fetchApi(`${API}/retry`, delay > 0 ? { id, delay } : { id },
        "POST"),
      (id) => `Job #${id} will be retried${when}.`,
      (id) => `Retrying job #${id}`, "operator", false);
  }

  cancel() {
    this.act(`Cancel job #${this.id}?`,
      "It becomes cancelled and is never retried. A running attempt is " +
      "told to stop.", "Cancel job",
      (id) => fetchApi(`${API}/cancel`, { id }, "POST"),
      (id) => `Job #${id} cancelled.`,
      (id) => `Cancelling job #${id}`, "operator");
  }

  remove() {
    this.act(`Delete job #${this.id}?`,
      "The job and its history are removed for good. This cannot be " +
      "undone.", "Delete",
      async (id) => {
        await fetchApi(`${API}/delete`, { id }, "DELETE");
        this.close();
      },
      (id) => `Job #${id} deleted.`,
      (id) => `Deleting job #${id}`, "admin");
  }

  clear() {
    this.close();
    setText(byId("job-data"), "");
    setText(byId("job-error"), "");
    for (const dd of this.values.values()) {
      setText(dd, "");
    }
  }
}
