// The cell map: every cell's state of charge, voltage and temperature (one shown, all in its label), coloured
// within the pack's spread; lowest and highest marked, and the BMS's weakest cell and the cells it balances.

import { cellNumber, el } from "./format.js";

const $ = (id) => document.getElementById(id);

const QUANTITIES = {
  soc: { name: "state of charge", text: (x) => x.toFixed(1), unit: " %" },
  voltage: { name: "voltage", text: (x) => x.toFixed(3), unit: " V" },
  temperature: { name: "temperature", text: (x) => x.toFixed(1), unit: " °C" },
};

// numpy's round (half to even), so that cells map to sensors exactly as the BMS maps them.
const roundHalfEven = (x) => {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 ? r - 1 : r;
};

// The sensor covering each cell: sensors evenly spread along the string (openbms.safety.runaway.sensor_of_cell).
function sensorOfCell(cells, sensors) {
  const edge = (j) => roundHalfEven((j * cells) / sensors);
  const of = new Array(cells).fill(0);
  for (let j = 0; j < sensors; j++) for (let i = edge(j); i < Math.max(edge(j + 1), edge(j) + 1); i++) of[i] = j;
  return of;
}

// Build the tiles once per pack size; later updates change text, classes and colour only.
function tiles(count) {
  const map = $("cell-map");
  if (map.children.length !== count) {
    map.replaceChildren(...Array.from({ length: count }, () => el("li", {}, el("span"))));
  }
  return map.children;
}

const argmin = (xs) => xs.reduce((best, x, i) => (x < xs[best] ? i : best), 0);
const argmax = (xs) => xs.reduce((best, x, i) => (x > xs[best] ? i : best), 0);
const shown = () => document.querySelector('input[name="cell-show"]:checked')?.value ?? "soc";

let latest = null; // redrawn at once when the owner picks another quantity
document.querySelectorAll('input[name="cell-show"]').forEach((r) => r.addEventListener("change", () => latest && updateCells(latest)));

export function updateCells(v) {
  latest = v;
  const volts = (v["CellVoltage.CellVoltages"] ?? []).map(Number);
  if (!volts.length) return;
  const socs = (v["OpenBMS.CellStateOfCharge"] ?? []).map(Number);
  const sensors = (v["OpenBMS.CellTemperatures"] ?? []).map(Number);
  const sensorOf = sensors.length ? sensorOfCell(volts.length, sensors.length) : [];
  const temps = sensorOf.map((j) => sensors[j]);
  const balancing = new Set((v["OpenBMS.BalancingCells"] ?? []).map(Number));
  const weakest = v["OpenBMS.WeakestCell"] === undefined ? -1 : Number(v["OpenBMS.WeakestCell"]);

  // A BMS without the OpenBMS overlay publishes voltages only: show those.
  const series = { soc: socs, voltage: volts, temperature: temps };
  const mode = series[shown()].length === volts.length ? shown() : "voltage";
  const q = QUANTITIES[mode];
  const xs = series[mode];
  const [low, high] = [argmin(xs), argmax(xs)];
  const spread = Math.max(xs[high] - xs[low], 1e-3);
  Array.from(tiles(volts.length)).forEach((tile, i) => {
    tile.firstChild.textContent = q.text(xs[i]);
    const label = `Cell ${i + 1}: ` + [
      socs.length && `${QUANTITIES.soc.text(socs[i])} % charged`,
      `${QUANTITIES.voltage.text(volts[i])} V`,
      temps.length && `${QUANTITIES.temperature.text(temps[i])} °C (sensor ${sensorOf[i] + 1})`,
      i === weakest && "weakest cell",
      balancing.has(i) && "being balanced",
    ].filter(Boolean).join(", ");
    tile.setAttribute("aria-label", label);
    tile.title = label;
    // Blue (lowest in the pack) to orange (highest): an outlier stands out whatever the state of charge.
    tile.style.setProperty("--hue", String(220 - 190 * ((xs[i] - xs[low]) / spread)));
    tile.classList.toggle("low", i === low);
    tile.classList.toggle("high", i === high);
    tile.classList.toggle("weakest", i === weakest);
    tile.classList.toggle("balancing", balancing.has(i));
  });
  $("cell-quantity").textContent = q.name;
  const unit = (x) => q.text(x) + q.unit;
  $("cell-summary").textContent = [
    `${volts.length} cells`,
    `${q.name} ${unit(xs[low])} (cell ${cellNumber(low)}) to ${unit(xs[high])} (cell ${cellNumber(high)})`,
    weakest >= 0 && `weakest cell ${cellNumber(weakest)}`,
    v["OpenBMS.BalancingCells"] && (balancing.size ? `balancing ${balancing.size} cell${balancing.size > 1 ? "s" : ""}` : "no cell balancing"),
    mode !== "temperature" && `temperatures ${Number(v["Temperature.Min"]).toFixed(1)}–${Number(v["Temperature.Max"]).toFixed(1)} °C`,
  ].filter(Boolean).join(" · ");
}
