// The overview: counts per status, what is ready, the last hour's chart,
// and the monitor with its start and stop (workers by state: workers.js).

import { API, ApiError, fetchApi } from "./api.js";
import { MinuteChart } from "./chart.js";
import { byId, setText, show } from "./dom.js";
import { count, duration } from "./format.js";
import { confirmAction, toast } from "./ui.js";

const STATUSES = ["pending", "processing", "completed", "failed",
  "cancelled", "total"];

export class Overview {
  constructor(ctx) {
    this.ctx = ctx;
    this.chart = new MinuteChart(byId("chart"), byId("chart-summary"));
    this.running = null;
    byId("monitor-start").addEventListener("click", () => this.monitor(
      "start"));
    byId("monitor-stop").addEventListener("click", () => this.monitor(
      "stop"));
  }

  async refresh() {
    const [stats, monitor] = await Promise.allSettled([
      fetchApi(`${API}/stats`),
      fetchApi(`${API}/monitor/running`),
    ]);
    this.showMonitor(monitor);
    if (stats.status === "rejected") {
      throw stats.reason;
    }
    this.showStats(stats.value);
  }

  showStats(stats) {
    this.ctx.setDefaultMax(stats.default_max_attempts);
    for (const status of STATUSES) {
      setText(byId(`count-${status}`), count(stats[status]));
    }
    setText(byId("count-ready"), count(stats.ready));
    setText(byId("oldest-ready"), stats.ready > 0
      ? duration(stats.oldest_ready_age_s) : "–");
    this.chart.update(stats.per_minute);
    // The job tabs show the same counts.
    for (const tab of document.querySelectorAll("#status-tabs [role=tab]")) {
      const key = tab.dataset.status || "total";
      setText(tab.querySelector(".n"), count(stats[key]));
    }
  }

  showMonitor(result) {
    const state = byId("monitor-state");
    const start = byId("monitor-start");
    const stop = byId("monitor-stop");
    if (result.status === "rejected") {
      const err = result.reason;
      if (err instanceof ApiError && err.status === 401) {
        throw err;
      }
      this.running = null;
      setText(state, "unknown");
      state.className = "pill pill-unknown";
      setText(byId("monitor-note"), err.message);
      show(start, false);
      show(stop, false);
      return;
    }
    this.running = Boolean(result.value.running);
    setText(byId("monitor-note"), "");
    setText(state, this.running ? "running" : "stopped");
    state.className = `pill ${this.running ? "pill-ok" : "pill-off"}`;
    const admin = this.ctx.can("admin");
    show(start, admin && !this.running);
    show(stop, admin && this.running);
  }

  async monitor(verb) {
    const what = verb === "start" ? "Starting the monitor"
      : "Stopping the monitor";
    if (verb === "stop") {
      const sure = await confirmAction("Stop the monitor?",
        "The daemon's workers finish the jobs they hold and stop; no " +
        "job runs until the monitor is started again.", "Stop monitor");
      if (!sure) {
        return;
      }
    }
    try {
      await fetchApi(`${API}/monitor/${verb}`, {}, "POST");
      toast(verb === "start" ? "Monitor started." : "Monitor stopped.");
    } catch (err) {
      this.ctx.fail(err, what, "admin");
    }
    this.ctx.refreshSoon();
  }

  clear() {
    for (const status of STATUSES) {
      setText(byId(`count-${status}`), "–");
    }
    setText(byId("count-ready"), "–");
    setText(byId("oldest-ready"), "–");
    this.chart.update([]);
    setText(byId("monitor-state"), "–");
    setText(byId("monitor-note"), "");
    show(byId("monitor-start"), false);
    show(byId("monitor-stop"), false);
  }
}
