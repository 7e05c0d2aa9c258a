// The owner's dashboard: one more VISS client of the car, plus the owner's endpoints (grants, audit, history).

import { mountApps } from "./apps.js";
import { updateCells } from "./cells.js";
import { mountCharts } from "./charts.js";
import { mountClients } from "./clients.js";
import { mountControls } from "./controls.js";
import { updateAlarms } from "./alarms.js";
import { FORMATS, ROOT, dateTime } from "./format.js";
import { updateGlance } from "./glance.js";
import { OwnerApi, claims, takeToken } from "./owner.js";
import { VissClient } from "./viss.js";

const LIVE_PERIOD_MS = "500"; // the BMS may publish many times a second; a person reads twice a second at most
const HOW_TO_GET_IN = "Open the link that `openbms serve` prints when it starts (it carries your owner token), "
  + `or make a new owner token with \`openbms token --owner\` and open ${location.origin}/#token=<token>.`;

function showProblem(message) {
  const box = document.getElementById("problem");
  box.textContent = message;
  box.hidden = false;
  document.querySelector("main").hidden = true;
  document.getElementById("connection").textContent = "Not connected";
}

function authMessage(error) {
  if (error.reason === "expired_token") return `Your access has expired. ${HOW_TO_GET_IN}`;
  return `This page's access token is not accepted (${error.message}). ${HOW_TO_GET_IN}`;
}

// Token problems stop the whole page with one readable message; anything else is shown where it happened.
function report(error, place) {
  if (error.number === 401) showProblem(authMessage(error));
  else place.textContent = `Not done: ${error.message}`;
}

function start() {
  const token = takeToken();
  if (!token) return showProblem(`This page needs your owner token. ${HOW_TO_GET_IN}`);
  const mine = claims(token);
  if (!mine) return showProblem(`The saved access token is damaged. ${HOW_TO_GET_IN}`);
  if (mine.exp * 1000 <= Date.now()) return showProblem(`Your access expired on ${dateTime(mine.exp)}. ${HOW_TO_GET_IN}`);

  const status = document.getElementById("connection");
  let connected = false;
  let estimating = false; // until the BMS publishes its first SoC the car is starting, not live
  const showStatus = () => {
    status.textContent = !connected ? "Reconnecting…" : estimating ? "Live" : "Starting…";
  };
  const viss = new VissClient(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/viss`, token, {
    onStatus: (s) => { connected = s === "live"; showStatus(); },
  });
  const owner = new OwnerApi(token);
  const refreshAudit = mountApps(owner, mine.jti, report);
  const updateControls = mountControls(viss, report, refreshAudit);
  mountCharts(owner, report);
  mountClients(owner, report);

  const values = {}; // relative path -> latest wire value
  const bound = document.querySelectorAll("[data-path]");
  let latest = 0;
  // The server answers 503 service_unavailable while the BMS is silent: its last values are not shown as live.
  const stale = (error) => {
    if (error.reason !== "service_unavailable") return report(error, status);
    document.body.classList.add("stale");
    const said = Date.parse(error.message.match(/since (\S+Z)/)?.[1] ?? "") / 1000; // the server's last value
    const since = latest || said;
    status.textContent = since ? `No data since ${dateTime(since)}` : "No data from the BMS";
    status.title = error.message;
  };
  viss.subscribe(ROOT, { type: "timebased", parameter: { period: LIVE_PERIOD_MS } }, (points) => {
    if (document.body.classList.contains("stale")) {
      document.body.classList.remove("stale");
      status.textContent = "Live";
      status.title = "";
    }
    for (const { path, dp } of points) {
      values[path.slice(ROOT.length + 1)] = dp.value;
      latest = Math.max(latest, Date.parse(dp.ts) / 1000);
    }
    for (const node of bound) {
      const value = values[node.dataset.path];
      if (value !== undefined) node.textContent = FORMATS[node.dataset.format](value);
    }
    if (!estimating && values["StateOfCharge.Displayed"] != null) {
      estimating = true;
      showStatus();
    }
    updateGlance(values, latest);
    updateCells(values);
    updateAlarms(values, latest);
    updateControls(values);
  }, stale);
}

start();
