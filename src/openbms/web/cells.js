// The cell map: every cell's voltage, coloured within the pack's spread, lowest and highest cell marked.

import { cellNumber, el } from "./format.js";

const $ = (id) => document.getElementById(id);

// Build the tiles once per pack size; later updates change text and colour only.
function tiles(count) {
  const map = $("cell-map");
  if (map.children.length !== count) {
    map.replaceChildren(...Array.from({ length: count }, () => el("li", {}, el("span"))));
  }
  return map.children;
}

export function updateCells(v) {
  const volts = (v["CellVoltage.CellVoltages"] ?? []).map(Number);
  if (!volts.length) return;
  const low = Number(v["CellVoltage.IdMin"]);
  const high = Number(v["CellVoltage.IdMax"]);
  const [vmin, vmax] = [volts[low], volts[high]];
  const spread = Math.max(vmax - vmin, 1e-3);
  Array.from(tiles(volts.length)).forEach((tile, i) => {
    const text = volts[i].toFixed(3);
    tile.firstChild.textContent = text;
    tile.setAttribute("aria-label", `Cell ${i + 1}: ${text} V`);
    tile.title = `Cell ${i + 1}: ${text} V`;
    // Blue (lowest in the pack) to orange (highest): an outlier stands out whatever the state of charge.
    tile.style.setProperty("--hue", String(220 - 190 * ((volts[i] - vmin) / spread)));
    tile.classList.toggle("low", i === low);
    tile.classList.toggle("high", i === high);
  });
  $("cell-summary").textContent =
    `${volts.length} cells · spread ${Math.round(1000 * (vmax - vmin))} mV · ` +
    `lowest cell ${cellNumber(low)} (${vmin.toFixed(3)} V) · highest cell ${cellNumber(high)} (${vmax.toFixed(3)} V) · ` +
    `temperatures ${Number(v["Temperature.Min"]).toFixed(1)}–${Number(v["Temperature.Max"]).toFixed(1)} °C`;
}
