// The alarm timeline: the BMS's current ErrorCodes, explained, and when each began and cleared.
// The server keeps no history of ErrorCodes (string arrays are not recorded), so the timeline is what
// this browser has seen, kept in localStorage across visits.

import { clock, dateTime, el } from "./format.js";

const KEY = "openbms.alarms";
const KEEP = 100;

// ErrorCodes are `kind` or `kind:cellN` (N from 1); the kinds are the BMS safety events.
const EXPLAIN = {
  overvoltage: "A cell's voltage is above its safe limit; charging is reduced or stopped.",
  undervoltage: "A cell's voltage is below its safe limit; the battery is nearly empty, power is reduced.",
  overtemperature: "The battery is too hot for the present charge or discharge; power is reduced.",
  undertemperature: "The battery is too cold for the present charge or discharge; power is reduced.",
  overcurrent_charge: "The charging current is above the safe limit.",
  overcurrent_discharge: "The discharge current is above the safe limit.",
  sensor_fault: "A sensor reading is implausible; the BMS works around it. Have it checked.",
  internal_short: "A cell loses charge as if it had an internal short. Have the battery inspected.",
  thermal_runaway: "A cell is heating uncontrollably. Leave the vehicle and call emergency services.",
  voltage_collapse: "A cell's voltage dropped suddenly without load.",
  abnormal_heating: "A cell heats faster than its current explains.",
  contactors_opened: "The BMS disconnected the battery for safety.",
  contactor_welded: "A battery contactor did not open when commanded. Service needed.",
  contactor_failed_to_close: "A battery contactor did not close when commanded. Service needed.",
  precharge_failed: "Connecting the battery (precharge) did not complete.",
};

function describe(code) {
  const [kind, where] = code.split(":");
  const cell = where?.startsWith("cell") ? `Cell ${where.slice(4)}: ` : "";
  return { title: kind.replace(/_/g, " "), text: cell + (EXPLAIN[kind] ?? "See the BMS documentation for this code.") };
}

const load = () => JSON.parse(localStorage.getItem(KEY) ?? "[]");
let shown = null; // the codes last rendered: most updates change nothing here

export function updateAlarms(v, now) {
  const codes = new Set(v["ErrorCodes"] ?? []);
  const key = [...codes].sort().join(" ");
  if (key === shown) return;
  shown = key;
  const episodes = load(); // newest first: {code, since, until}
  const open = new Set(episodes.filter((e) => e.until == null).map((e) => e.code));
  for (const e of episodes) if (e.until == null && !codes.has(e.code)) e.until = now;
  for (const code of codes) if (!open.has(code)) episodes.unshift({ code, since: now, until: null });
  localStorage.setItem(KEY, JSON.stringify(episodes.slice(0, KEEP)));
  render(episodes, codes.size);
}

function render(episodes, active) {
  document.getElementById("alarm-summary").textContent = active
    ? `${active} active alarm${active > 1 ? "s" : ""}`
    : "No active alarms.";
  document.getElementById("alarm-list").replaceChildren(...episodes.map((e) => {
    const { title, text } = describe(e.code);
    const when = e.until == null ? `since ${dateTime(e.since)}` : `${dateTime(e.since)} – ${clock(e.until)}`;
    return el("li", { className: e.until == null ? "active" : "cleared" },
      el("strong", {}, title), " ", el("span", { className: "when" }, when), el("p", {}, text));
  }));
}
