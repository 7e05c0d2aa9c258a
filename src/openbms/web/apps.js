// Connected apps: the owner grants another app access (readable choices mapped to VSS scopes), sees its token
// once, lists and revokes grants, and reads the audit log of commands.

import { dateTime, describeCommand, el, ROOT, signal } from "./format.js";

const ACCESS = [
  { name: "Read battery state", scope: `read:${ROOT}` },
  { name: "Set charge limit", scope: `actuate:${signal("Charging.ChargeLimit")}` },
  { name: "Start/stop charging", scope: `actuate:${signal("Charging.StartStopCharging")}` },
  { name: "Battery preconditioning", scope: `actuate:${signal("BatteryConditioning.RequestedMode")}` },
  { name: "Battery health record only (for a buyer or assessor)", scope: "health" },
];
const $ = (id) => document.getElementById(id);

const readable = (scope) =>
  scope === "owner" ? "Everything (owner)" : ACCESS.find((a) => a.scope === scope)?.name ?? scope;

export function mountApps(owner, ownGrantId, report) {
  $("grant-scopes").append(...ACCESS.map((a, i) => el("label", {},
    el("input", { type: "checkbox", name: "scope", value: a.scope, checked: i === 0 }), ` ${a.name}`)));

  async function grants() {
    try {
      const rows = (await owner.grants()).reverse(); // newest first
      $("grant-table").tBodies[0].replaceChildren(...rows.map((g) => el("tr", {},
        el("td", {}, g.app, g.id === ownGrantId ? " (this dashboard)" : ""),
        el("td", {}, g.scopes.map(readable).join(", ")),
        el("td", {}, dateTime(g.expires_at)),
        el("td", {}, g.status),
        el("td", {}, g.status === "active" && g.id !== ownGrantId
          ? el("button", { type: "button", textContent: "Revoke", ariaLabel: `Revoke access of ${g.app}`,
            onclick: () => revoke(g) })
          : null))));
    } catch (error) {
      report(error, $("grant-result"));
    }
  }

  async function revoke(grant) {
    try {
      await owner.revoke(grant.id);
      $("grant-result").textContent = `${grant.app} no longer has access.`;
    } catch (error) {
      report(error, $("grant-result"));
    }
    grants();
  }

  // A refusal repeated within a minute is one row with its count (a flood of them cannot fill the disk).
  function refused(r) {
    return r.count > 1 ? `refused ${r.count} times, until ${dateTime(r.last_time)}` : "refused";
  }

  async function audit() {
    try {
      const rows = await owner.audit();
      $("audit-table").tBodies[0].replaceChildren(...rows.map((r) => el("tr", {},
        el("td", {}, dateTime(r.time)),
        el("td", {}, r.app),
        el("td", {}, describeCommand(r.path, r.requested)),
        el("td", {}, r.accepted ? describeCommand(r.path, r.applied) : refused(r)),
        el("td", {}, r.reason))));
    } catch (error) {
      report(error, $("grant-result"));
    }
  }

  $("grant-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const scopes = [...document.querySelectorAll('input[name="scope"]:checked')].map((c) => c.value);
    if (!scopes.length) {
      $("grant-result").textContent = "Choose at least one thing the app may do.";
      return;
    }
    try {
      const { grant, token } = await owner.grant($("grant-app").value, scopes, Number($("grant-ttl").value));
      $("grant-result").textContent = `${grant.app} may now: ${grant.scopes.map(readable).join(", ")}.`;
      $("new-token-text").value = token;
      $("new-token").hidden = false;
    } catch (error) {
      report(error, $("grant-result"));
    }
    grants();
  });

  $("copy-token").addEventListener("click", async () => {
    const text = $("new-token-text");
    text.select();
    try {
      await navigator.clipboard.writeText(text.value);
      $("grant-result").textContent = "Token copied.";
    } catch { // the clipboard API needs a secure context; the selected text can still be copied by hand
      $("grant-result").textContent = "Press Ctrl+C (or long-press and Copy) to copy the selected token.";
    }
  });
  $("audit-refresh").addEventListener("click", audit);

  grants();
  audit();
  return audit;
}
