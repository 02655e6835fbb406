// The jobs list: status tabs, filters by queue and class, find by id,
// pages newest first, and the cleanup button.
//
// Pages stay put while jobs arrive: leaving the first page pins the list
// to the newest id seen there (max_id), so page 2 keeps showing the same
// jobs however many are pushed meanwhile.  The first page is always live.

import { API, fetchApi } from "./api.js";
import { byId, h, setAttr, setText, show, syncRows } from "./dom.js";
import { attempts, count, defaultNote, exact, priorityName, relative }
  from "./format.js";
import { confirmAction, toast } from "./ui.js";

const PAGE_SIZE = 25;

// The time a row shows beside its creation, by status.
const EVENTS = {
  pending: ["available_at", "due"],
  processing: ["started_at", "started"],
  completed: ["completed_at", "completed"],
  failed: ["failed_at", "failed"],
  cancelled: ["failed_at", "cancelled"],
};

function timeCell(iso) {
  const node = h("time");
  updateTime(node, iso);
  return node;
}

// A time relative to now, with the exact time as its title.
function updateTime(node, iso) {
  setAttr(node, "datetime", iso || null);
  setAttr(node, "title", iso ? exact(iso) : null);
  setText(node, iso ? relative(iso) : "–");
}

// The last event: what happened, then when ("completed 3 s ago").  The
// word is its own element, which a phone leaves out where the status
// already says it (all but "due").
function updateEvent(cell, job) {
  const [field, word] = EVENTS[job.status] || ["", ""];
  const iso = job[field];
  setText(cell.firstChild, iso && word ? `${word} ` : "");
  setAttr(cell.firstChild, "class", `word word-${word}`);
  updateTime(cell.lastChild, iso);
}

export class Jobs {
  constructor(ctx) {
    this.ctx = ctx;
    this.seq = 0;
    this.reset();
    this.tabs = [...document.querySelectorAll("#status-tabs [role=tab]")];
    this.tabs.forEach((tab) => {
      tab.addEventListener("click", () => this.choose(tab));
      tab.addEventListener("keydown", (event) => this.tabKey(event, tab));
    });
    byId("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      this.filter();
    });
    byId("filters").addEventListener("reset", () => {
      // The form clears its fields after this event; filter after that.
      window.setTimeout(() => this.filter(), 0);
    });
    byId("find").addEventListener("submit", (event) => {
      event.preventDefault();
      this.find();
    });
    byId("page-first").addEventListener("click", () => this.go(1));
    byId("page-prev").addEventListener("click", () => this.go(
      this.state.page - 1));
    byId("page-next").addEventListener("click", () => this.go(
      this.state.page + 1));
    byId("cleanup").addEventListener("click", () => this.cleanup());
    this.body = byId("jobs-table").tBodies[0];
  }

  reset() {
    this.state = { status: "", queue: "", job_class: "", page: 1,
      anchor: null, total: 0, newest: null };
    this.shown = [];
  }

  // Draw the rows again from what was fetched, when something they show
  // besides the jobs changes (the default max_attempts, once known).
  redraw() {
    for (const row of this.body.rows) {
      const job = this.shown.find((j) => String(j.id) === row.dataset.key);
      if (job) {
        this.updateRow(row, job);
      }
    }
  }

  // Change what is listed and go back to the live first page.
  change(patch) {
    Object.assign(this.state, patch, { page: 1, anchor: null });
    this.seq += 1;
    this.ctx.refreshSoon();
  }

  choose(chosen) {
    for (const tab of this.tabs) {
      const on = tab === chosen;
      tab.setAttribute("aria-selected", String(on));
      tab.tabIndex = on ? 0 : -1;
    }
    this.change({ status: chosen.dataset.status });
  }

  // Arrow keys move between tabs, as screen-reader users expect.
  tabKey(event, tab) {
    const at = this.tabs.indexOf(tab);
    const moves = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0,
      End: this.tabs.length - 1 };
    if (!(event.key in moves)) {
      return;
    }
    event.preventDefault();
    const next = this.tabs[(moves[event.key] + this.tabs.length) %
      this.tabs.length];
    next.focus();
    this.choose(next);
  }

  filter() {
    const form = byId("filters");
    this.change({
      queue: form.elements.queue.value.trim(),
      job_class: form.elements.job_class.value.trim(),
    });
  }

  go(page) {
    const pages = Math.max(1, Math.ceil(this.state.total / PAGE_SIZE));
    const target = Math.min(Math.max(1, page), pages);
    if (target === 1) {
      this.state.anchor = null;
    } else if (this.state.anchor === null) {
      this.state.anchor = this.state.newest;
    }
    this.state.page = target;
    this.seq += 1;
    this.ctx.refreshSoon();
  }

  find() {
    const input = byId("find-id");
    const id = Number(input.value);
    if (!Number.isInteger(id) || id < 1) {
      toast("A job id is a whole number from 1 up.", "error");
      input.focus();
      return;
    }
    this.ctx.openJob(id, input);
  }

  async refresh() {
    const seq = this.seq;
    const s = this.state;
    const data = await fetchApi(`${API}/jobs`, {
      page: s.page,
      limit: PAGE_SIZE,
      status: s.status,
      queue: s.queue,
      job_class: s.job_class,
      max_id: s.anchor,
    });
    if (seq !== this.seq) {
      return;  // the reader asked for something else meanwhile
    }
    s.total = data.total;
    if (s.page === 1) {
      s.newest = data.jobs.length ? data.jobs[0].id : null;
    }
    this.render(data.jobs);
    const pages = Math.max(1, Math.ceil(data.total / PAGE_SIZE));
    if (s.page > pages) {
      this.go(pages);  // jobs went away under the reader: show the last
    }
  }

  render(jobs) {
    this.shown = jobs;
    syncRows(this.body, jobs, (job) => job.id, (job) => this.buildRow(job),
      (row, job) => this.updateRow(row, job));
    show(byId("jobs-empty"), jobs.length === 0);
    const s = this.state;
    const pages = Math.max(1, Math.ceil(s.total / PAGE_SIZE));
    const pinned = s.anchor !== null ? ` up to #${s.anchor}` : "";
    setText(byId("page-info"),
      `Page ${s.page} of ${pages} · ${count(s.total)} jobs${pinned}`);
    byId("page-first").disabled = s.page <= 1;
    byId("page-prev").disabled = s.page <= 1;
    byId("page-next").disabled = s.page >= pages;
    this.remember(jobs);
  }

  buildRow(job) {
    const open = h("button", { type: "button", class: "link",
      "aria-label": `Open job ${job.id}` }, `#${job.id}`);
    open.addEventListener("click", () => this.ctx.openJob(job.id, open));
    // Each cell's class names its column, so that narrow screens can
    // leave some out (admin.css); the detail dialog shows them all.
    const cells = [
      h("th", { class: "num id", scope: "row" }, open),
      h("td", { class: "name" }),
      h("td", { class: "class" }),
      h("td", { class: "queue" }),
      h("td", { class: "status" }, h("span", { class: "pill" })),
      h("td", { class: "num priority" }),
      h("td", { class: "num attempts" }),
      h("td", { class: "created" }, timeCell(null)),
      h("td", { class: "event" }, h("span", { class: "word" }),
        timeCell(null)),
    ];
    return h("tr", {}, ...cells);
  }

  updateRow(row, job) {
    const c = row.cells;
    setText(c[1], job.job_name);
    setAttr(c[1], "title", job.job_name);
    setText(c[2], job.job_class);
    setAttr(c[2], "title", job.job_class);
    setText(c[3], job.queue);
    setAttr(c[3], "title", job.queue);
    const pill = c[4].firstChild;
    setText(pill, job.status);
    setAttr(pill, "class", `pill status-${job.status}`);
    setText(c[5], priorityName(job.priority));
    const defaultMax = this.ctx.defaultMax();
    setText(c[6], attempts(job, defaultMax));
    const ownMax = job.max_attempts !== null && job.max_attempts !== undefined;
    setAttr(c[6], "title", ownMax || defaultMax === null ? null
      : defaultNote(defaultMax));
    updateTime(c[7].firstChild, job.created_at);
    updateEvent(c[8], job);
  }

  // Offer the queues and classes seen so far as suggestions.
  remember(jobs) {
    for (const [list, key] of [["queues-seen", "queue"],
      ["classes-seen", "job_class"]]) {
      const node = byId(list);
      const known = new Set([...node.options].map((o) => o.value));
      for (const job of jobs) {
        if (!known.has(job[key]) && known.size < 200) {
          known.add(job[key]);
          node.append(h("option", { value: job[key] }));
        }
      }
    }
  }

  async cleanup() {
    const sure = await confirmAction("Clean up finished jobs?",
      "Deletes completed jobs past completed_job_ttl and failed or " +
      "cancelled jobs past failed_job_ttl. This cannot be undone.",
      "Clean up");
    if (!sure) {
      return;
    }
    try {
      const data = await fetchApi(`${API}/cleanup`, {}, "POST");
      const n = data.cleaned_count;
      toast(`Cleanup removed ${count(n)} finished ${n === 1 ? "job"
        : "jobs"}.`);
    } catch (err) {
      this.ctx.fail(err, "Cleanup", "admin");
    }
    this.ctx.refreshSoon();
  }

  clear() {
    this.reset();
    this.seq += 1;
    this.body.replaceChildren();
    setText(byId("page-info"), "");
    show(byId("jobs-empty"), false);
    byId("filters").reset();
    byId("find-id").value = "";
    for (const list of ["queues-seen", "classes-seen"]) {
      byId(list).replaceChildren();
    }
    this.tabs.forEach((tab, i) => {
      tab.setAttribute("aria-selected", String(i === 0));
      tab.tabIndex = i === 0 ? 0 : -1;
    });
  }
}
