// The workers table, and the overview's count of workers by state.
// Workers come from the daemon over its control socket: while the daemon
// is down both say so instead of showing old rows.

import { API, ApiError, fetchApi } from "./api.js";
import { byId, h, setText, show, syncRows } from "./dom.js";
import { count, duration } from "./format.js";

function stateClass(state) {
  return String(state || "").toLowerCase().replace(/[^a-z-]/g, "");
}

export class Workers {
  constructor(ctx) {
    this.ctx = ctx;
    this.body = byId("workers-table").tBodies[0];
  }

  async refresh() {
    let workers;
    try {
      workers = (await fetchApi(`${API}/workers`)).workers || [];
    } catch (err) {
      if (err instanceof ApiError && err.status !== 401) {
        this.unavailable(err);
        return;
      }
      throw err;
    }
    show(byId("workers-error"), false);
    syncRows(this.body, workers, (w) => `${w.host}:${w.pid}:${w.role}`,
      (w) => this.buildRow(w), (row, w) => this.updateRow(row, w));
    show(byId("workers-empty"), workers.length === 0);
    this.showStates(workers);
  }

  unavailable(err) {
    const note = byId("workers-error");
    setText(note, `Workers unknown: ${err.message}`);
    show(note, true);
    show(byId("workers-empty"), false);
    this.body.replaceChildren();
    const list = byId("worker-states");
    delete list.dataset.shown;
    list.replaceChildren(h("li", { class: "muted" },
      "unknown (see Workers below)"));
  }

  // data-label names each cell's column for the phone layout, where a
  // worker is a card and the header row is not drawn (admin.css).
  buildRow() {
    const cell = (label, props = {}, ...children) => h("td",
      { ...props, "data-label": label }, ...children);
    return h("tr", {}, h("th", { scope: "row" }),
      cell("PID", { class: "num" }), cell("Role"),
      cell("State", {}, h("span", { class: "pill" })),
      cell("Current job", { class: "num" }),
      cell("Last heartbeat", { class: "num" }),
      cell("Jobs done", { class: "num" }));
  }

  updateRow(row, w) {
    const c = row.cells;
    setText(c[0], w.host);
    setText(c[1], w.pid);
    setText(c[2], w.role);
    const pill = c[3].firstChild;
    setText(pill, w.state);
    const cls = `pill worker-${stateClass(w.state)}`;
    if (pill.className !== cls) {
      pill.className = cls;
    }
    this.jobLink(c[4], w.current_job);
    setText(c[5], w.heartbeat_age === null || w.heartbeat_age === undefined
      ? "–" : `${duration(w.heartbeat_age)} ago`);
    setText(c[6], count(w.jobs_done));
  }

  // The current job as a button that opens it, rebuilt only on change.
  jobLink(cell, id) {
    const want = id === null || id === undefined ? "" : String(id);
    if (cell.dataset.job === want) {
      return;
    }
    cell.dataset.job = want;
    if (!want) {
      cell.replaceChildren("–");
      return;
    }
    const open = h("button", { type: "button", class: "link",
      "aria-label": `Open job ${want}` }, `#${want}`);
    open.addEventListener("click", () => this.ctx.openJob(Number(want),
      open));
    cell.replaceChildren(open);
  }

  showStates(workers) {
    const list = byId("worker-states");
    const states = new Map();
    for (const w of workers) {
      states.set(w.state, (states.get(w.state) || 0) + 1);
    }
    const items = [...states.entries()].sort();
    const key = JSON.stringify(items);
    if (list.dataset.shown === key) {
      return;
    }
    list.dataset.shown = key;
    if (!items.length) {
      list.replaceChildren(h("li", { class: "muted" }, "no workers"));
      return;
    }
    list.replaceChildren(...items.map(([state, n]) => h("li",
      { class: `state worker-${stateClass(state)}` },
      h("span", { class: "n" }, count(n)), ` ${state}`)));
  }

  clear() {
    this.body.replaceChildren();
    show(byId("workers-error"), false);
    show(byId("workers-empty"), false);
    const list = byId("worker-states");
    delete list.dataset.shown;
    list.replaceChildren();
  }
}
