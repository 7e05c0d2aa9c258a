// The alarm timeline: the BMS's current ErrorCodes, explained, and when each began and cleared.
// The explanation is the BMS's own (its latest OpenBMS.Events entry for that code: severity, cell, value);
// the texts below stand in where the BMS gave none. The server keeps no history of string arrays, so the
// timeline is what this browser has seen, kept in localStorage across visits.

import { clock, dateTime, el } from "./format.js";

const KEY = "openbms.alarms";
const KEEP = 100;

// ErrorCodes are `kind` or `kind:cellN` (N from 1); the kinds are the BMS safety events.
// Severities as an owner reads them (a derate lowers the power the battery gives and takes).
const SEVERITY = { info: "info", warning: "warning", derate: "power reduced", critical: "critical" };
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
  storage_fault: "The BMS cannot save to its storage: commands are refused and recent settings would be lost "
    + "on a restart. Free space or fix the storage; the BMS retries on its own.",
};

function fallback(code) {
  const [kind, where] = code.split(":");
  const cell = where?.startsWith("cell") ? `Cell ${where.slice(4)}: ` : "";
  return cell + (EXPLAIN[kind] ?? "See the BMS documentation for this code.");
}

// The latest event the BMS reported for each code (Events is newest last; entries are JSON objects).
function bmsSaid(events) {
  const said = {};
  for (const text of events) {
    try {
      const e = JSON.parse(text);
      said[e.cell ? `${e.kind}:cell${e.cell}` : e.kind] = e;
    } catch { /* a malformed entry explains nothing */ }
  }
  return said;
}

const load = () => JSON.parse(localStorage.getItem(KEY) ?? "[]");
let shown = null; // the codes and events last rendered: most updates change nothing here

export function updateAlarms(v, now) {
  const codes = new Set(v["ErrorCodes"] ?? []);
  const events = v["OpenBMS.Events"] ?? [];
  const key = `${[...codes].sort().join(" ")}|${events.at(-1) ?? ""}`;
  if (key === shown) return;
  shown = key;
  const said = bmsSaid(events);
  const episodes = load(); // newest first: {code, since, until, said, cleared}
  const open = new Set(episodes.filter((e) => e.until == null).map((e) => e.code));
  for (const e of episodes) {
    if (e.until != null) continue;
    const latest = said[e.code];
    if (!codes.has(e.code)) {
      e.until = now;
      if (latest?.cleared) e.cleared = latest; // the BMS's word on the recovery
    } else if (latest) e.said = latest;
  }
  for (const code of codes) if (!open.has(code)) episodes.unshift({ code, since: now, until: null, said: said[code] });
  localStorage.setItem(KEY, JSON.stringify(episodes.slice(0, KEEP)));
  render(episodes, codes.size);
}

const capital = (text) => text[0].toUpperCase() + text.slice(1);
// The severity an episode is at: its latest event's, unless that event cleared a level (the code stays active
// one level lower, which the event does not name).
const severityOf = (e) => (e.said && !e.said.cleared && SEVERITY[e.said.severity] ? e.said.severity : null);
const RANK = Object.keys(SEVERITY);

function render(episodes, active) {
  const worst = episodes.filter((e) => e.until == null).map(severityOf)
    .reduce((a, b) => (RANK.indexOf(b) > RANK.indexOf(a) ? b : a), null);
  document.getElementById("alarm-summary").textContent = active
    ? `${active} active alarm${active > 1 ? "s" : ""}${worst ? `, the worst ${SEVERITY[worst]}` : ""}.`
    : "No active alarms.";
  document.getElementById("alarm-list").replaceChildren(...episodes.map((e) => {
    const [kind] = e.code.split(":");
    const when = e.until == null ? `since ${dateTime(e.since)}` : `${dateTime(e.since)} – ${clock(e.until)}`;
    const severity = severityOf(e);
    return el("li", { className: [e.until == null ? "active" : "cleared", severity && `sev-${severity}`].filter(Boolean).join(" ") },
      el("strong", {}, kind.replace(/_/g, " ")),
      e.said?.cell ? ` · cell ${e.said.cell}` : null,
      severity ? el("span", { className: "severity" }, SEVERITY[severity]) : null,
      " ", el("span", { className: "when" }, when),
      el("p", {}, e.said?.explanation ? `The BMS: ${capital(e.said.explanation)}` : fallback(e.code)),
      e.cleared ? el("p", { className: "when" }, `Cleared: ${e.cleared.explanation}`) : null);
  }));
}
