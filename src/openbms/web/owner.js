// The owner's credential (from the URL fragment `#token=...`, then localStorage) and the owner's HTTP endpoints.

import { VissError } from "./viss.js";

const KEY = "openbms.ownerToken";

// The fragment never reaches a server log; once read, the token leaves the address bar (and its history).
export function takeToken() {
  const found = new URLSearchParams(location.hash.slice(1)).get("token");
  if (found) {
    localStorage.setItem(KEY, found);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return localStorage.getItem(KEY);
}

// The token's claims, read without verifying (the server verifies): to warn of expiry and to know our own grant.
export function claims(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload));
  } catch {
    return null;
  }
}

export class OwnerApi {
  constructor(token) {
    this.token = token;
  }

  async call(method, url, body) {
    let response;
    try {
      response = await fetch(url, {
        method,
        headers: { Authorization: `Bearer ${this.token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
    } catch {
      throw new VissError({ number: 503, reason: "disconnected", message: "the car cannot be reached right now" });
    }
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new VissError(answer.error ?? { number: response.status, reason: "http", message: response.statusText });
    }
    return answer;
  }

  grants = () => this.call("GET", "/owner/grants");
  grant = (app, scopes, ttl_s) => this.call("POST", "/owner/grants", { app, scopes, ttl_s });
  revoke = (id) => this.call("DELETE", `/owner/grants/${encodeURIComponent(id)}`);
  audit = (limit = 50) => this.call("GET", `/owner/audit?limit=${limit}`);

  history(path, start, end, points = 500) {
    const query = new URLSearchParams({ path, start: String(start), end: String(end), points: String(points) });
    return this.call("GET", `/owner/history?${query}`);
  }
}
