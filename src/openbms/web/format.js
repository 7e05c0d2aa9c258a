// Signal paths and how their wire values (VISS v2 sends every value as a string) read to a person.

export const ROOT = "Vehicle.Powertrain.TractionBattery";
export const signal = (relative) => `${ROOT}.${relative}`;

const MODES = {
  INACTIVE: "Off",
  FAST_CHARGING_PREPARATION: "Preparing for fast charging",
  DRIVING_PREPARATION: "Preparing for driving",
};

const fixed = (digits, unit) => (v) => `${Number(v).toFixed(digits)} ${unit}`;

// Named in the HTML's data-format attributes.
export const FORMATS = {
  percent: fixed(1, "%"),
  percent0: fixed(0, "%"),
  kwh: fixed(1, "kWh"),
  volt: fixed(1, "V"),
  amp: fixed(1, "A"),
  celsius: fixed(1, "°C"),
  km: (v) => `${Math.round(Number(v) / 1000)} km`,
  // Positive power charges the battery (VSS convention); say which way it flows.
  kw: (v) => {
    const kw = Number(v) / 1000;
    const way = Math.abs(kw) < 0.05 ? "idle" : kw > 0 ? "charging" : "discharging";
    return `${Math.abs(kw).toFixed(1)} kW ${way}`;
  },
  power: (v) => `${(Number(v) / 1000).toFixed(1)} kW`, // a limit: no direction
  bound: (v) => `± ${Number(v).toFixed(1)} %`,
  mode: (v) => MODES[v] ?? v,
};

// What an app (or this page) can set, named for a person; also labels the audit log.
export const COMMANDS = {
  "Charging.ChargeLimit": { name: "Charge limit", value: FORMATS.percent0 },
  "Charging.StartStopCharging": { name: "Charging", value: (v) => (v === "START" ? "start" : "stop") },
  "BatteryConditioning.RequestedMode": { name: "Preconditioning", value: FORMATS.mode },
};

export function describeCommand(path, value) {
  const command = COMMANDS[path.replace(`${ROOT}.`, "")];
  return command ? `${command.name}: ${command.value(value)}`
    : `${path} = ${typeof value === "string" ? value : JSON.stringify(value)}`;
}

export function duration(seconds) {
  const minutes = Math.round(seconds / 60);
  const h = Math.floor(minutes / 60);
  return h ? `${h} h ${minutes % 60} min` : `${minutes} min`;
}

export function clock(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function dateTime(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

// Cells are numbered from 1 for people (as the BMS's alarms do); VSS IdMin/IdMax are 0-based.
export const cellNumber = (id) => Number(id) + 1;

// A tiny element builder so that rows are made of text nodes, never of HTML strings (no injection).
export function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}
