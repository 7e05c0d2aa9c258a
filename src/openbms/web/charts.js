// History charts from /owner/history: small hand-drawn SVG lines, one chart per quantity.

import { clock, dateTime, el, signal } from "./format.js";

const CHARTS = [
  { title: "State of charge", unit: "%", series: [["StateOfCharge.Displayed", "state of charge"]] },
  { title: "Temperature", unit: "°C",
    series: [["Temperature.Max", "highest"], ["Temperature.Average", "average"], ["Temperature.Min", "lowest"]] },
  { title: "Power", unit: "kW", scale: 1e-3, series: [["CurrentPower", "power (+ charging, − driving)"]] },
  { title: "Capacity", unit: "%", series: [["StateOfHealth", "health (capacity)"]] },
];
const SVG = "http://www.w3.org/2000/svg";
const W = 300;
const H = 100;
const REFRESH_MS = 30000;

function svgNode(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

// One chart from [{label, points: [[t, v], ...]}]; time spans the data found, so a young history fills the width.
function draw(chart, lines) {
  const all = lines.flatMap((l) => l.points);
  const ts = all.map((p) => p[0]);
  const vs = all.map((p) => p[1]);
  const [t0, t1] = [Math.min(...ts), Math.max(...ts)];
  const figure = el("figure", {}, el("figcaption", {}, `${chart.title} (${chart.unit})`));
  if (!(t1 > t0)) {
    figure.append(el("p", { className: "empty" }, "No history for this period yet."));
    return figure;
  }
  let [lo, hi] = [Math.min(...vs), Math.max(...vs)];
  if (hi - lo < 1e-6) [lo, hi] = [lo - 1, hi + 1];
  const x = (t) => ((t - t0) / (t1 - t0)) * W;
  const y = (v) => H - ((v - lo) / (hi - lo)) * H;
  const when = t1 - t0 > 86400 ? dateTime : clock;
  const digits = Math.max(0, Math.min(3, Math.ceil(-Math.log10(hi - lo)) + 1)); // enough to tell lo from hi
  const svg = svgNode("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
    "aria-label": `${chart.title} from ${when(t0)} to ${when(t1)}, between ${lo.toFixed(digits)} and ${hi.toFixed(digits)} ${chart.unit}` });
  if (lo < 0 && hi > 0) svg.append(svgNode("line", { x1: 0, x2: W, y1: y(0), y2: y(0), class: "zero" }));
  lines.forEach((line, i) => svg.append(svgNode("polyline", {
    points: line.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" "), class: `series s${i}` })));
  figure.append(
    el("div", { className: "plot" }, el("span", { className: "ymax" }, hi.toFixed(digits)), svg,
      el("span", { className: "ymin" }, lo.toFixed(digits))),
    el("p", { className: "xaxis" }, el("span", {}, when(t0)), el("span", {}, when(t1))),
    el("p", { className: "keys" }, ...lines.map((l, i) => el("span", { className: `key s${i}` }, l.label))),
  );
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
