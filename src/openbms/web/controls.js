// Controls: charge limit, start/stop charging, preconditioning. Each is a VISS set; the page shows what the
// BMS applied (which may differ from what was asked) and its reason.

import { describeCommand, signal } from "./format.js";
import { chargerText, chargingText } from "./glance.js";

const $ = (id) => document.getElementById(id);

export function mountControls(viss, report, onCommand) {
  async function command(output, relative, value) {
    const label = (v) => describeCommand(relative, v);
    output.className = "pending";
    output.textContent = `Sent: ${label(value)}. Waiting for the BMS…`;
    try {
      const { value: applied, reason } = await viss.set(signal(relative), value);
      const kept = applied === String(value); // VISS values travel as strings
      output.className = kept ? "ok" : "clamped";
      output.textContent = kept ? `Applied: ${label(applied)}. ${reason}`
        : `The BMS applied ${label(applied)} instead of ${label(value)}. ${reason}`;
    } catch (error) {
      output.className = "error";
      report(error, output);
    }
    onCommand();
  }

  const slider = $("limit-slider");
  const number = $("limit-number");
  const mode = $("conditioning-mode");
  slider.addEventListener("input", () => { number.value = slider.value; });
  number.addEventListener("input", () => { slider.value = number.value; });
  // A changed input makes the last answer stale: it spoke of another value.
  for (const [input, output] of [[slider, "limit-result"], [number, "limit-result"], [mode, "conditioning-result"]]) {
    input.addEventListener("input", () => {
      input.form.dataset.touched = "1";
      $(output).textContent = "";
      $(output).className = "";
    });
  }

  // No browser range check on the number: the BMS answers a limit out of range with the one it applied, and why.
  $("limit-form").noValidate = true;
  $("limit-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const output = $("limit-result");
    if (number.value.trim() === "" || !Number.isFinite(Number(number.value))) {
      output.className = "error";
      output.textContent = "Enter a charge limit in percent, e.g. 80.";
      return;
    }
    command(output, "Charging.ChargeLimit", Number(number.value));
  });
  $("charging-form").addEventListener("submit", (e) => {
    e.preventDefault();
    command($("charging-result"), "Charging.StartStopCharging", e.submitter.value);
  });
  $("conditioning-form").addEventListener("submit", (e) => {
    e.preventDefault();
    command($("conditioning-result"), "BatteryConditioning.RequestedMode", mode.value);
  });

  // Inputs follow the car's values until the owner starts changing them.
  return function update(v) {
    if (!$("limit-form").dataset.touched) slider.value = number.value = v["Charging.ChargeLimit"];
    if (!$("conditioning-form").dataset.touched) mode.value = v["BatteryConditioning.RequestedMode"];
    $("charging-now").textContent = chargingText(v);
    $("charger-state").textContent = chargerText(v);
  };
}
