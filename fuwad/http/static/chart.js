// The overview's chart: jobs completed and failed per minute over the last
// hour, as stacked bars in a hand-written SVG (no library to vendor).
//
// The bars are made once and then only resized, so a refresh every two
// seconds neither flickers nor moves the reader's hover.  The drawing is
// laid out in the element's own pixels, so text keeps its size on a phone.

import { clock, count } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";
const HEIGHT = 160;
const MIN_WIDTH = 240;
const LEFT = 34;
const RIGHT = 6;
const TOP = 8;
const BOTTOM = 20;
const MINUTES = 60;
const PLOT_H = HEIGHT - TOP - BOTTOM;
const BASE = TOP + PLOT_H;

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    node.setAttribute(name, String(value));
  }
  return node;
}

function setNumber(node, name, value) {
  const text = value.toFixed(1);
  if (node.getAttribute(name) !== text) {
    node.setAttribute(name, text);
  }
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
    this.rows = [];
    this.width = 0;

    this.lines = [];
    this.labels = [];
    for (let i = 0; i < 3; i += 1) {
      const y = TOP + (PLOT_H * i) / 2;
      const line = svg("line", { x1: LEFT, y1: y, y2: y, class: "grid" });
      const label = svg("text", { x: LEFT - 4, y: y + 4, class: "axis",
        "text-anchor": "end" });
      root.append(line, label);
      this.lines.push(line);
      this.labels.push(label);
    }
    this.marks = [[0, "−60 min", "start"], [30, "−30 min", "middle"],
      [MINUTES, "now", "end"]].map(([minute, text, anchor]) => {
      const label = svg("text", { y: HEIGHT - 5, class: "axis",
        "text-anchor": anchor });
      label.textContent = text;
      root.append(label);
      return { minute, label };
    });

    this.bars = [];
    for (let i = 0; i < MINUTES; i += 1) {
      const group = svg("g", { class: "minute" });
      // A full-height, transparent target so a hover finds thin bars.
      const hit = svg("rect", { y: TOP, height: PLOT_H, class: "hit" });
      const ok = svg("rect", { y: BASE, height: 0, class: "bar-ok" });
      const failed = svg("rect", { y: BASE, height: 0,
        class: "bar-failed" });
      const title = svg("title");
      group.append(title, hit, ok, failed);
      root.append(group);
      this.bars.push({ hit, ok, failed, title });
    }
    this.layout();
    if (window.ResizeObserver) {
      new ResizeObserver(() => this.layout()).observe(root);
    }
  }

  // Place everything across the element's current width.
  layout() {
    const width = Math.max(MIN_WIDTH, Math.round(this.root.clientWidth));
    if (width === this.width) {
      return;
    }
    this.width = width;
    this.root.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
    const slot = (width - LEFT - RIGHT) / MINUTES;
    for (const line of this.lines) {
      line.setAttribute("x2", String(width - RIGHT));
    }
    for (const { minute, label } of this.marks) {
      label.setAttribute("x", (LEFT + minute * slot).toFixed(1));
    }
    const gap = slot > 6 ? 1 : 0.5;
    this.bars.forEach((bar, i) => {
      const x = LEFT + i * slot + gap;
      const w = Math.max(0.5, slot - 2 * gap);
      for (const rect of [bar.hit, bar.ok, bar.failed]) {
        setNumber(rect, "x", x);
        setNumber(rect, "width", w);
      }
    });
  }

  // Draw [{minute, completed, failed}] x 60, oldest first.
  update(perMinute) {
    const rows = (perMinute || []).slice(-MINUTES);
    while (rows.length < MINUTES) {
      rows.unshift({ minute: null, completed: 0, failed: 0 });
    }
    const peak = Math.max(0, ...rows.map((r) => r.completed + r.failed));
    const top = niceMax(peak);
    this.labels.forEach((label, i) => {
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
      const okH = (row.completed / top) * PLOT_H;
      const failH = (row.failed / top) * PLOT_H;
      setNumber(bar.ok, "y", BASE - okH);
      setNumber(bar.ok, "height", okH);
      setNumber(bar.failed, "y", BASE - okH - failH);
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
      said += ` Busiest minute: ${busiest.when}, with ${count(
        busiest.total)}.`;
    }
    if (this.summary.textContent !== said) {
      this.summary.textContent = said;
    }
  }
}
