// Apps that ask the owner themselves (OAuth): the owner registers one by name and return address, and hands the
// app maker its client id (and secret, shown once). The app then sends the owner to the car's consent page.

import { el } from "./format.js";

const $ = (id) => document.getElementById(id);

export function mountClients(owner, report) {
  $("client-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const client = await owner.call("POST", "/owner/clients", {
        name: $("client-name").value, redirect_uris: [$("client-redirect").value], public: $("client-public").checked,
      });
      $("client-result").textContent = `${client.name} is registered. Give its maker these (the secret is shown once):`;
      $("client-credentials").replaceChildren(el("dt", {}, "Client id"), el("dd", {}, client.client_id),
        ...(client.client_secret ? [el("dt", {}, "Client secret"), el("dd", {}, client.client_secret)] : []),
        el("dt", {}, "Server"), el("dd", {}, `${location.origin}/.well-known/oauth-authorization-server`));
      $("client-credentials").hidden = false;
    } catch (error) {
      report(error, $("client-result"));
    }
  });
}
