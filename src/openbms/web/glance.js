// Battery at a glance: the parts that combine several signals (plain ones are bound by data-path in app.js).

import { FORMATS, clock, duration } from "./format.js";

const $ = (id) => document.getElementById(id);

export function chargingText(v) {
  if (v["Charging.IsCharging"] !== "true") return "Not charging";
  const left = Number(v["Charging.TimeToComplete"]);
  const limit = FORMATS.percent0(v["Charging.ChargeLimit"]);
  return left > 0 ? `Charging · ${duration(left)} to ${limit}` : `Charging to ${limit}`;
}

// OpenBMS.ChargingState is "state: reason" in the charge controller's words; the state, named for a person.
const CHARGER = { idle: "Not started", cc: "Full current", cv: "Topping up", derated: "Reduced current",
  complete: "Complete", stopped: "Stopped", fault: "Paused by a fault" };

export function chargerText(v) {
  const said = v["OpenBMS.ChargingState"];
  if (said === undefined) return "—";
  const [state, ...rest] = said.split(": ");
  const name = CHARGER[state] ?? state;
  const reason = rest.join(": ");
  if (!reason) return name;
  if (reason.toLowerCase().includes(name.toLowerCase())) return reason[0].toUpperCase() + reason.slice(1);
  return `${name} · ${reason}`;
}

export function updateGlance(v, updatedAt) {
  const soc = Number(v["StateOfCharge.Displayed"]);
  $("soc-fill").style.width = `${soc}%`;
  const bound = Number(v["OpenBMS.StateOfChargeBound"] ?? NaN); // drawn to scale around the figure shown
  const [lo, hi] = [Math.max(0, soc - bound), Math.min(100, soc + bound)];
  $("soc-band").hidden = !(hi > lo);
  Object.assign($("soc-band").style, { left: `${lo}%`, width: `${hi - lo}%` });
  $("soc-limit").style.left = `${Number(v["Charging.ChargeLimit"])}%`;
  $("charging-state").textContent = chargingText(v);
  $("temperature-span").textContent =
    `${FORMATS.celsius(v["Temperature.Min"])} – ${FORMATS.celsius(v["Temperature.Max"])}`;
  $("updated").textContent = clock(updatedAt);
}
