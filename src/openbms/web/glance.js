// Battery at a glance: the parts that combine several signals (plain ones are bound by data-path in app.js).

import { FORMATS, clock, duration } from "./format.js";

const $ = (id) => document.getElementById(id);

export function chargingText(v) {
  if (v["Charging.IsCharging"] !== "true") return "Not charging";
  const left = Number(v["Charging.TimeToComplete"]);
  const limit = FORMATS.percent0(v["Charging.ChargeLimit"]);
  return left > 0 ? `Charging · ${duration(left)} to ${limit}` : `Charging to ${limit}`;
}

export function updateGlance(v, updatedAt) {
  const soc = Number(v["StateOfCharge.Displayed"]);
  $("soc-fill").style.width = `${soc}%`;
  $("soc-limit").style.left = `${Number(v["Charging.ChargeLimit"])}%`;
  $("charging-state").textContent = chargingText(v);
  $("temperature-span").textContent =
    `${FORMATS.celsius(v["Temperature.Min"])} – ${FORMATS.celsius(v["Temperature.Max"])}`;
  $("updated").textContent = clock(updatedAt);
}
