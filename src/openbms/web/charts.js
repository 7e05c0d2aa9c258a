// History charts from /owner/history: small hand-drawn SVG charts, one per quantity, with value and time axes.

import { el, signal } from "./format.js";

const CHARTS = [
  { title: "State of charge", unit: "%", series: [["StateOfCharge.Displayed", "state of charge"]] },
  { title: "Temperature", unit: "°C",
    series: [["Temperature.Max", "highest"], ["Temperature.Average", "average"], ["Temperature.Min", "lowest"]] },
  { title: "Power", unit: "kW", scale: 1e-3, series: [["CurrentPower", "power (+ charging, − driving)"]] },
  { title: "Capacity", unit: "%", series: [["StateOfHealth", "health (capacity)"]] },
];
const SVG = "http://www.w3.org/2000/svg";
// Drawn in CSS pixels of a chart about as wide as it shows (the grid keeps charts 16-24rem wide), so the
// labels keep their size; the aspect ratio is kept, never stretched.
const W = 320;
const H = 150;
const PLOT = { left: 42, right: 18, top: 8, bottom: 22 };
const REFRESH_MS = 30000;
const MINUTE = 60;
const MIN_SPAN_S = 10; // a young history spans at least this, so its time axis holds two round times
const HOUR = 3600;
const DAY = 86400;
const TIME_STEPS = [1, 2, 3, 5, 10, 15, 30, MINUTE, 2 * MINUTE, 3 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE,
  30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY];

function svgNode(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// Round value ticks (1, 2, 2.5 or 5 times a power of ten), about `count` of them, covering lo..hi.
function valueTicks(lo, hi, count = 4) {
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const first = Math.floor(lo / step + 1e-9);
  const last = Math.ceil(hi / step - 1e-9);
  const ticks = Array.from({ length: last - first + 1 }, (_, i) => Number(((first + i) * step).toFixed(10)));
  return { ticks, digits: Math.max(0, -Math.floor(Math.log10(step) + 1e-9) + (step / power === 2.5 ? 1 : 0)) };
}

// Time ticks on round local clock times (every 10 min, 1 h, 6 h, a day...), at most five across the span, so
// their labels fit side by side on a phone. The steps at most double, so the span exceeds two of the step chosen
// and the axis always reads at least two times.
function timeTicks(t0, t1) {
  const step = TIME_STEPS.find((s) => (t1 - t0) / s <= 4) ?? Math.ceil((t1 - t0) / DAY / 4) * DAY;
  const offset = new Date(t0 * 1000).getTimezoneOffset() * 60; // local midnight, not UTC's
  const ticks = [];
  for (let t = Math.ceil((t0 - offset) / step) * step + offset; t <= t1; t += step) ticks.push(t);
  return { ticks, step };
}

function timeLabel(t, step, spansDays) {
  const d = new Date(t * 1000);
  const hm = d.toLocaleTimeString([], { hour: "numeric", minute: "2-digit", ...(step < MINUTE && { second: "2-digit" }) });
  if (step >= DAY) return d.toLocaleDateString([], { weekday: "short", day: "numeric" });
  if (!spansDays) return hm;
  return d.getHours() === 0 && d.getMinutes() === 0 ? d.toLocaleDateString([], { weekday: "short", day: "numeric" }) : hm;
}

function when(t) {
  return new Date(t * 1000).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

// One chart from [{label, points: [[t, v], ...]}]: time spans the data found, so a young history fills the width;
// a single sample is drawn as a dot.
function draw(chart, lines) {
  const all = lines.flatMap((l) => l.points);
  const figure = el("figure", {});
  if (!all.length) {
    figure.append(el("figcaption", {}, `${chart.title} (${chart.unit})`),
      el("p", { className: "empty" }, "No history for this period yet."));
    return figure;
  }
  const ts = all.map((p) => p[0]);
  const vs = all.map((p) => p[1]);
  let [t0, t1] = [Math.min(...ts), Math.max(...ts)];
  const short = Math.max(0, MIN_SPAN_S - (t1 - t0)) / 2; // a single sample, or a second of it: round times to read
  [t0, t1] = [t0 - short, t1 + short];
  let [lo, hi] = [Math.min(...vs), Math.max(...vs)];
  const pad = Math.max((hi - lo) * 0.05, Math.abs(hi) * 1e-3, 0.05);
  const { ticks: yTicks, digits } = valueTicks(lo - pad, hi + pad);
  [lo, hi] = [yTicks[0], yTicks[yTicks.length - 1]];
  const [x0, x1, y0, y1] = [PLOT.left, W - PLOT.right, H - PLOT.bottom, PLOT.top];
  const x = (t) => x0 + ((t - t0) / (t1 - t0)) * (x1 - x0);
  const y = (v) => y0 + ((v - lo) / (hi - lo)) * (y1 - y0);
  const latest = lines[0].points[lines[0].points.length - 1];
  figure.append(el("figcaption", {}, `${chart.title} (${chart.unit})`,
    latest ? el("span", { className: "latest" }, ` · latest ${latest[1].toFixed(digits + 1)}`) : null));

  const svg = svgNode("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `${chart.title} from ${when(t0)} to ${when(t1)}, between ${Math.min(...vs).toFixed(digits)} and `
      + `${Math.max(...vs).toFixed(digits)} ${chart.unit}` });
  for (const v of yTicks) {
    svg.append(svgNode("line", { x1: x0, x2: x1, y1: y(v), y2: y(v), class: v === 0 ? "grid zero" : "grid" }),
      svgNode("text", { x: x0 - 4, y: y(v), class: "tick y" }, v.toFixed(digits)));
  }
  const { ticks: tTicks, step } = timeTicks(t0, t1);
  const spansDays = new Date(t0 * 1000).toDateString() !== new Date(t1 * 1000).toDateString();
  for (const t of tTicks) {
    svg.append(svgNode("line", { x1: x(t), x2: x(t), y1: y0, y2: y0 + 4, class: "axis" }),
      svgNode("text", { x: x(t), y: y0 + 15, class: "tick t" }, timeLabel(t, step, spansDays)));
  }
  svg.append(svgNode("line", { x1: x0, x2: x1, y1: y0, y2: y0, class: "axis" }));
  lines.forEach((line, i) => {
    if (line.points.length === 1) {
      const [[t, v]] = line.points;
      svg.append(svgNode("circle", { cx: x(t), cy: y(v), r: 3, class: `dot s${i}` }));
    } else {
      svg.append(svgNode("polyline", {
        points: line.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" "), class: `series s${i}` }));
    }
  });
  figure.append(svg, el("p", { className: "keys" }, ...lines.map((l, i) => el("span", { className: `key s${i}` }, l.label))));
  return figure;
}

async function load(owner, seconds) { // the server averages into at most 500 points per series
  const end = Date.now() / 1000;
  return Promise.all(CHARTS.map(async (chart) => draw(chart, await Promise.all(chart.series.map(async ([path, label]) => {
    const { points } = await owner.history(signal(path), end - seconds, end);
    return { label, points: points.map(([t, v]) => [t, Number(v) * (chart.scale ?? 1)]) };
  })))));
}

export function mountCharts(owner, onError) {
  const box = document.getElementById("charts");
  const range = () => Number(document.querySelector('input[name="range"]:checked').value);
  let latest = 0; // a slow answer for a period no longer chosen must not replace a newer one
  const refresh = async () => {
    const mine = ++latest;
    const seconds = range();
    try {
      const figures = await load(owner, seconds);
      if (mine !== latest) return;
      box.replaceChildren(...figures);
      box.dataset.seconds = String(seconds);
    } catch (error) {
      onError(error, box);
    }
  };
  document.querySelectorAll('input[name="range"]').forEach((r) => r.addEventListener("change", refresh));
  refresh();
  setInterval(refresh, REFRESH_MS);
}
