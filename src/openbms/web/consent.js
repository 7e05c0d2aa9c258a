// The consent page: an app sent the owner here (an OAuth authorization request); the page says in plain words
// what it asks for and for how long, and sends the owner's decision. The owner is known by the dashboard's token.

import { dateTime, el } from "./format.js";
import { takeToken } from "./owner.js";

const $ = (id) => document.getElementById(id);
const DAY_S = 86400;
const query = location.search.slice(1);

function showProblem(message) {
  $("problem").textContent = message;
  $("problem").hidden = false;
  $("consent-form").hidden = true;
}

const period = (seconds) => (seconds >= 365 * DAY_S ? `${Math.round(seconds / (365 * DAY_S))} year`
  : `${Math.round(seconds / DAY_S)} day${seconds === DAY_S ? "" : "s"}`);

// An answer with a redirect goes back to the app (with its code, or with the error the app must hear of).
function follow(answer) {
  if (answer.redirect) location.assign(answer.redirect);
  else showProblem(`This request cannot be approved: ${answer.error_description ?? answer.error}.`);
}

// OAuth answers (a description, a redirect, or an OAuth error) come back as they are; the owner's token being
// refused (a VISS error object) or the car being unreachable is thrown.
async function ask(token, method, url, body) {
  let response;
  try {
    response = await fetch(url, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch {
    throw new Error("the car cannot be reached right now");
  }
  const answer = await response.json().catch(() => ({ error: "server_error", error_description: response.statusText }));
  if (typeof answer.error === "object") throw new Error(answer.error.message);
  return answer;
}

async function start() {
  const token = takeToken();
  if (!token) {
    return showProblem("Only the car's owner can approve access. Open your dashboard (the link `openbms serve` "
      + "prints) once in this browser, then come back to this page.");
  }
  let asked;
  try {
    asked = await ask(token, "GET", `/oauth/consent?${query}`);
  } catch (error) {
    return showProblem(`Your dashboard's access is not accepted here (${error.message}).`);
  }
  if (asked.error) return follow(asked);

  $("consent-app").textContent = asked.client.name;
  $("consent-host").textContent = asked.redirect_host;
  $("consent-scopes").append(...asked.scopes.map((s) => el("label", {},
    el("input", { type: "checkbox", name: "scope", value: s.scope, checked: true }), ` ${s.text}`)));
  $("consent-ttl").append(...asked.ttl_choices_s.map((s) => el("option",
    { value: String(s), textContent: period(s), selected: s === asked.ttl_s })));
  const until = () => {
    $("consent-until").textContent = `Until ${dateTime(Date.now() / 1000 + Number($("consent-ttl").value))}, `
      + "or until you revoke it under Connected apps in your dashboard.";
  };
  $("consent-ttl").addEventListener("change", until);
  until();
  $("consent-form").hidden = false;

  async function decide(allow) {
    const scopes = [...document.querySelectorAll('input[name="scope"]:checked')].map((c) => c.value);
    if (allow && !scopes.length) {
      $("consent-result").textContent = "Tick at least one thing, or press Deny.";
      return;
    }
    try {
      const ttl_s = Number($("consent-ttl").value);
      follow(await ask(token, "POST", "/oauth/consent", { query, scopes, ttl_s, allow }));
    } catch (error) {
      $("consent-result").textContent = `Not done: ${error.message}`;
    }
  }
  $("consent-form").addEventListener("submit", (e) => { e.preventDefault(); decide(true); });
  $("consent-deny").addEventListener("click", () => decide(false));
}

start();
