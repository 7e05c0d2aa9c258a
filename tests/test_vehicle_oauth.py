"""OAuth 2.0 on the vehicle, driven by requests-oauthlib (an OAuth client no one here wrote): the code flow with
PKCE, refresh rotation and RFC 7009 revocation work, and every bad request gets the RFC's error, is audited, and
grants nothing. The owner's consent is given through the consent page's own endpoints (the browser test clicks it).
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from test_reliability import Fault
from test_vehicle_demo import LIMIT, ROOT, SOC, DemoVehicle

from openbms.vehicle.hub import SignalHub
from openbms.vehicle.oauth import ACCESS_TTL_S, CODE_TTL_S, DEFAULT_TTL_S, plain_words
from openbms.vehicle.server import running_server
from openbms.vehicle.store import Store
from waiting import PATIENCE_S, http

requests_oauthlib = pytest.importorskip("requests_oauthlib")
REDIRECT = "http://127.0.0.1:9/callback"  # never contacted: the test reads the redirect the consent answers
SCOPES = [f"read:{ROOT}", f"actuate:{LIMIT}"]


@pytest.fixture(scope="module")
def vehicle(tmp_path_factory):
    hub = SignalHub(stale_after_s=PATIENCE_S)  # published once: live for the whole module
    DemoVehicle(hub).publish()
    hub.publish({f"{ROOT}.StateOfHealth": 97.0})
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('oauth') / 'openbms.db'}")
    with running_server(hub, store) as server:
        owner = server.authority.token(server.authority.grant("owner", ["owner"], 3600))
        yield (
            server,
            httpx.Client(base_url=server.http_url, headers={"Authorization": f"Bearer {owner}"}, timeout=PATIENCE_S),
        )
    store.close()


@pytest.fixture(autouse=True)
def loopback_http(monkeypatch):
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # oauthlib wants https; the test server is loopback
    monkeypatch.setenv("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")  # the owner may approve less than asked (RFC 6749 §3.3)


def register(owner: httpx.Client, public: bool = False, redirect: str = REDIRECT) -> dict:
    answer = owner.post(
        "/owner/clients", json={"name": "Other Brand App", "redirect_uris": [redirect], "public": public}
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def session(client: dict, scope=SCOPES, redirect: str = REDIRECT):
    return requests_oauthlib.OAuth2Session(client["client_id"], redirect_uri=redirect, scope=scope, pkce="S256")


def consent(owner: httpx.Client, authorization_url: str, scopes=None, allow: bool = True) -> dict:
    """What the consent page does: read what the app asks, then send the owner's ticks."""
    query = urlsplit(authorization_url).query
    described = owner.get(f"/oauth/consent?{query}")
    if described.status_code != 200 or "redirect" in described.json():
        return described.json()
    asked = [s["scope"] for s in described.json()["scopes"]]
    return owner.post(
        "/oauth/consent",
        json={"query": query, "scopes": asked if scopes is None else scopes, "ttl_s": 86400, "allow": allow},
    ).json()


def authorize(vehicle, client: dict, scopes=None, oauth=None):
    server, owner = vehicle
    oauth = oauth or session(client)
    url, _state = oauth.authorization_url(f"{server.http_url}/oauth/authorize")
    return oauth, consent(owner, url, scopes)["redirect"]


def fetch(vehicle, client, oauth, redirect_with_code):
    server, _ = vehicle
    return oauth.fetch_token(
        f"{server.http_url}/oauth/token",
        authorization_response=redirect_with_code,
        client_secret=client["client_secret"],
        include_client_id=client["client_secret"] is None,
    )


def read(vehicle, access_token: str, path: str = SOC) -> httpx.Response:
    server, _ = vehicle
    return http.get(f"{server.http_url}/{path.replace('.', '/')}", headers={"Authorization": f"Bearer {access_token}"})


def token_error(answer) -> tuple[int, str]:
    return answer.status_code, answer.json()["error"]


def audit_of(vehicle, app: str = "Other Brand App") -> list[dict]:
    return [
        r for r in vehicle[1].get("/owner/audit?limit=500").json() if r["path"].startswith("oauth:") and r["app"] == app
    ]


def test_metadata_says_how_to_reach_the_server(vehicle):
    server, _ = vehicle
    meta = http.get(f"{server.http_url}/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == server.http_url
    assert meta["authorization_endpoint"] == f"{server.http_url}/oauth/authorize"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert set(meta["grant_types_supported"]) == {"authorization_code", "refresh_token"}
    assert meta["revocation_endpoint"] == f"{server.http_url}/oauth/revoke"
    assert f"actuate:{LIMIT}" in meta["scopes_supported"]


@pytest.mark.parametrize("public", [False, True], ids=["confidential", "public"])
def test_code_flow_with_pkce_gives_a_vehicle_token_that_refreshes_with_rotation(vehicle, public):
    server, owner = vehicle
    client = register(owner, public=public)
    oauth, redirect = authorize(vehicle, client)
    token = fetch(vehicle, client, oauth, redirect)
    assert token["token_type"].lower() == "bearer" and token["expires_in"] <= ACCESS_TTL_S
    assert sorted(token["scope"]) == sorted(SCOPES)
    assert read(vehicle, token["access_token"]).status_code == 200
    set_answer = http.post(
        f"{server.http_url}/{LIMIT.replace('.', '/')}",
        json={"value": "80", "requestId": uuid.uuid4().hex},
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert set_answer.json()["data"]["dp"]["value"] == "80"
    # the consent is a grant like any other: the owner sees it, named after the app
    grant = next(
        g
        for g in owner.get("/owner/grants").json()
        if g["app"] == "Other Brand App" and g["status"] == "active" and g["scopes"] == SCOPES
    )
    refreshed = oauth.refresh_token(f"{server.http_url}/oauth/token", **_refresh_auth(client))
    assert refreshed["refresh_token"] != token["refresh_token"]
    assert read(vehicle, refreshed["access_token"]).status_code == 200
    assert owner.delete(f"/owner/grants/{grant['id']}").status_code == 200
    assert read(vehicle, refreshed["access_token"]).status_code == 401
    after = _post_token(vehicle, client, grant_type="refresh_token", refresh_token=refreshed["refresh_token"])
    assert token_error(after) == (400, "invalid_grant")


def test_the_owner_unticks_a_scope_and_the_app_gets_only_the_rest(vehicle):
    server, owner = vehicle
    client = register(owner)
    oauth, redirect = authorize(vehicle, client, scopes=[f"read:{ROOT}"])
    token = fetch(vehicle, client, oauth, redirect)
    assert token["scope"] == [f"read:{ROOT}"]
    refused = http.post(
        f"{server.http_url}/{LIMIT.replace('.', '/')}",
        json={"value": "80", "requestId": "x1"},
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert refused.status_code == 403
    # asking a refresh for more than the owner approved
    wider = _post_token(
        vehicle, client, grant_type="refresh_token", refresh_token=token["refresh_token"], scope=" ".join(SCOPES)
    )
    assert token_error(wider) == (400, "invalid_scope")


def test_rfc7009_revocation_ends_the_consent(vehicle):
    server, owner = vehicle
    client = register(owner)
    oauth, redirect = authorize(vehicle, client)
    token = fetch(vehicle, client, oauth, redirect)
    answer = http.post(
        f"{server.http_url}/oauth/revoke",
        data={"token": token["refresh_token"], "token_type_hint": "refresh_token"},
        auth=_basic(client),
    )
    assert answer.status_code == 200
    assert read(vehicle, token["access_token"]).status_code == 401
    again = _post_token(vehicle, client, grant_type="refresh_token", refresh_token=token["refresh_token"])
    assert token_error(again) == (400, "invalid_grant")
    assert (
        http.post(f"{server.http_url}/oauth/revoke", data={"token": "never-issued"}, auth=_basic(client)).status_code
        == 200
    )  # RFC 7009 §2.2


def test_authorization_errors_are_the_rfcs_and_grant_nothing(vehicle):
    server, owner = vehicle
    client = register(owner)
    grants_before = len(owner.get("/owner/grants").json())
    base = f"{server.http_url}/oauth/authorize"
    unknown = session({"client_id": "no-such-app"}).authorization_url(base)[0]
    answer = consent(owner, unknown)
    assert answer["error"] == "invalid_client" and "redirect" not in answer
    wrong_redirect = session(client, redirect="http://127.0.0.1:9/elsewhere").authorization_url(base)[0]
    answer = consent(owner, wrong_redirect)
    assert answer["error"] == "invalid_request" and "redirect" not in answer  # never sent to an unregistered URI
    no_pkce = requests_oauthlib.OAuth2Session(client["client_id"], redirect_uri=REDIRECT, scope=SCOPES)
    answer = consent(owner, no_pkce.authorization_url(base)[0])
    assert answer["error"] == "invalid_request" and "PKCE" in answer["error_description"]
    assert answer["redirect"].startswith(REDIRECT)  # a valid client and URI hear of the error themselves
    owner_scope = session(client, scope=["owner"]).authorization_url(base)[0]
    assert consent(owner, owner_scope)["error"] == "invalid_scope"
    bad_path = session(client, scope=["read:Vehicle.Cabin"]).authorization_url(base)[0]
    assert consent(owner, bad_path)["error"] == "invalid_scope"
    oauth = session(client)
    url = oauth.authorization_url(base)[0]
    beyond = consent(owner, url, scopes=[*SCOPES, f"actuate:{ROOT}.Charging.StartStopCharging"])
    assert beyond["error"] == "invalid_scope"
    denied = consent(owner, url, allow=False)
    assert denied["error"] == "access_denied" and parse_qs(urlsplit(denied["redirect"]).query)["state"]
    assert len(owner.get("/owner/grants").json()) == grants_before
    logged = {r["reason"].split(":")[0] for r in audit_of(vehicle) if not r["accepted"]}
    assert {"invalid_request", "invalid_scope", "access_denied"} <= logged
    assert any(r["app"] == "unknown client 'no-such-app'" for r in vehicle[1].get("/owner/audit?limit=500").json())


def test_token_errors_are_the_rfcs_and_grant_nothing(vehicle):
    client = register(vehicle[1])
    oauth, redirect = authorize(vehicle, client)
    code = parse_qs(urlsplit(redirect).query)["code"][0]
    verifier = oauth._code_verifier
    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    assert token_error(_post_token(vehicle, client, **exchange)) == (400, "invalid_request")  # no verifier
    wrong = _post_token(vehicle, client, **exchange, code_verifier=_other_verifier(verifier))
    assert token_error(wrong) == (400, "invalid_grant")
    elsewhere = _post_token(
        vehicle, client, **{**exchange, "redirect_uri": "http://127.0.0.1:9/elsewhere"}, code_verifier=verifier
    )
    assert token_error(elsewhere) == (400, "invalid_grant")
    stranger = {**client, "client_secret": "not-the-secret"}
    assert token_error(_post_token(vehicle, stranger, **exchange, code_verifier=verifier)) == (401, "invalid_client")
    nobody = {"client_id": "no-such-app", "client_secret": "x"}
    assert token_error(_post_token(vehicle, nobody, **exchange, code_verifier=verifier)) == (401, "invalid_client")
    assert any(
        r["app"] == "unknown client 'no-such-app'" and r["path"] == "oauth:/oauth/token"
        for r in vehicle[1].get("/owner/audit?limit=500").json()
    )
    first = _post_token(vehicle, client, **exchange, code_verifier=verifier)
    assert first.status_code == 200
    reused = _post_token(vehicle, client, **exchange, code_verifier=verifier)
    assert token_error(reused) == (400, "invalid_grant")
    assert read(vehicle, first.json()["access_token"]).status_code == 401  # a replayed code revokes what it gave


def test_a_replayed_refresh_token_revokes_the_grant(vehicle):
    client = register(vehicle[1])
    oauth, redirect = authorize(vehicle, client)
    token = fetch(vehicle, client, oauth, redirect)
    rotated = _post_token(vehicle, client, grant_type="refresh_token", refresh_token=token["refresh_token"])
    assert rotated.status_code == 200
    replay = _post_token(vehicle, client, grant_type="refresh_token", refresh_token=token["refresh_token"])
    assert token_error(replay) == (400, "invalid_grant")
    assert read(vehicle, rotated.json()["access_token"]).status_code == 401
    later = _post_token(vehicle, client, grant_type="refresh_token", refresh_token=rotated.json()["refresh_token"])
    assert token_error(later) == (400, "invalid_grant")


def test_expired_codes_and_refresh_tokens_are_invalid_grant(vehicle):
    server, owner = vehicle
    oauth_server = server.server.interface.oauth.server
    client = register(owner)
    oauth, redirect = authorize(vehicle, client)
    code = parse_qs(urlsplit(redirect).query)["code"][0]
    oauth_server.clock = lambda: time.time() + CODE_TTL_S + 1
    try:
        late = _post_token(
            vehicle,
            client,
            grant_type="authorization_code",
            code=code,
            redirect_uri=REDIRECT,
            code_verifier=oauth._code_verifier,
        )
        assert token_error(late) == (400, "invalid_grant") and "expired" in late.json()["error_description"]
        oauth_server.clock = time.time
        token = fetch(vehicle, client, *authorize(vehicle, client))
        oauth_server.clock = lambda: time.time() + 2 * 86400  # past the one day the owner consented to
        stale = _post_token(vehicle, client, grant_type="refresh_token", refresh_token=token["refresh_token"])
        assert token_error(stale) == (400, "invalid_grant") and "expired" in stale.json()["error_description"]
    finally:
        oauth_server.clock = time.time


def test_a_buyer_asks_for_the_health_record_in_plain_words(vehicle):
    server, owner = vehicle
    client = register(owner)
    oauth = session(client, scope=["health"])
    url = oauth.authorization_url(f"{server.http_url}/oauth/authorize")[0]
    asked = owner.get(f"/oauth/consent?{urlsplit(url).query}").json()
    assert asked["client"]["name"] == "Other Brand App" and asked["redirect_host"] == "127.0.0.1:9"
    assert asked["scopes"] == [{"scope": "health", "text": plain_words("health")}]
    assert "nothing else" in asked["scopes"][0]["text"] and DEFAULT_TTL_S in asked["ttl_choices_s"]
    token = fetch(vehicle, client, oauth, consent(owner, url)["redirect"])
    assert read(vehicle, token["access_token"], f"{ROOT}.StateOfHealth").status_code == 200
    assert read(vehicle, token["access_token"], SOC).status_code == 403  # and nothing else


def test_registration_refuses_what_the_rfcs_forbid(vehicle):
    _, owner = vehicle
    for uri in ("http://example.com/cb", "https://app.example/cb#frag", "not a uri", ""):
        answer = owner.post("/owner/clients", json={"name": "x", "redirect_uris": [uri]})
        assert answer.status_code == 400 and "redirect URI" in answer.json()["error"]["message"], uri
    assert owner.post("/owner/clients", json={"name": " ", "redirect_uris": [REDIRECT]}).status_code == 400
    assert owner.post("/owner/clients", content=b"{" * 20000).status_code == 400  # too long: read no further
    token_endpoint = f"{vehicle[0].http_url}/oauth/token"
    assert token_error(http.post(token_endpoint, data={"code": "x" * 20000})) == (413, "invalid_request")
    assert token_error(http.post(token_endpoint, json={"grant_type": "refresh_token"})) == (400, "invalid_request")
    unread = [r for r in vehicle[1].get("/owner/audit?limit=50").json() if r["app"] == "(unknown client)"]
    assert unread[0]["requested"] == '{"grant_type":"refresh_token"}' and "urlencoded" in unread[0]["reason"]
    assert unread[1]["requested"].endswith("(more than 16384 bytes)") and "at most" in unread[1]["reason"]
    app_token = vehicle[0].authority.token(vehicle[0].authority.grant("app", [f"read:{ROOT}"], 60))
    assert (
        http.post(
            f"{vehicle[0].http_url}/owner/clients",
            json={"name": "x", "redirect_uris": [REDIRECT]},
            headers={"Authorization": f"Bearer {app_token}"},
        ).status_code
        == 403
    )


def test_an_oauth_change_the_audit_cannot_take_is_not_made(vehicle):
    """Consent, tokens, rotation, revocation: each change and its audit row are one transaction, so a database
    that refuses the write refuses the change (503) and nothing of it happens; it works once writes do."""
    server, owner = vehicle
    client = register(owner)
    fault = Fault(server.store)
    try:
        oauth = session(client)
        url = oauth.authorization_url(f"{server.http_url}/oauth/authorize")[0]
        grants_before = owner.get("/owner/grants").json()
        fault.on = True
        query = urlsplit(url).query
        asked = [s["scope"] for s in owner.get(f"/oauth/consent?{query}").json()["scopes"]]  # reading works
        refused = owner.post("/oauth/consent", json={"query": query, "scopes": asked, "ttl_s": 86400, "allow": True})
        assert refused.status_code == 503 and "nothing was changed" in refused.json()["error"]["message"]
        fault.on = False
        assert owner.get("/owner/grants").json() == grants_before  # no grant without its audit row

        oauth, redirect = authorize(vehicle, client)
        code = parse_qs(urlsplit(redirect).query)["code"][0]
        exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
        exchange["code_verifier"] = oauth._code_verifier
        fault.on = True
        assert token_error(_post_token(vehicle, client, **exchange)) == (503, "temporarily_unavailable")
        fault.on = False
        token = _post_token(vehicle, client, **exchange)  # the code was not spent by the refused exchange
        assert token.status_code == 200, token.text
        refresh = {"grant_type": "refresh_token", "refresh_token": token.json()["refresh_token"]}
        fault.on = True
        assert token_error(_post_token(vehicle, client, **refresh)) == (503, "temporarily_unavailable")
        revoke = {"token": refresh["refresh_token"], "token_type_hint": "refresh_token"}
        answer = http.post(f"{server.http_url}/oauth/revoke", data=revoke, auth=_basic(client))
        assert token_error(answer) == (503, "temporarily_unavailable")
        fault.on = False
        assert read(vehicle, token.json()["access_token"]).status_code == 200  # not revoked
        rotated = _post_token(vehicle, client, **refresh)  # not rotated: the refresh token still works, once
        assert rotated.status_code == 200, rotated.text
    finally:
        fault.on = False
        fault.remove()
    grant_id = next(r["grant_id"] for r in audit_of(vehicle) if r["reason"].startswith("the owner consented"))
    reasons = [r["reason"] for r in audit_of(vehicle) if r["grant_id"] == grant_id and r["accepted"]]
    assert reasons[-1].startswith("the owner consented") and sum("issued" in r for r in reasons) == 2


def _post_token(vehicle, client: dict, **form) -> httpx.Response:
    server, _ = vehicle
    if client.get("client_secret") is None:
        return http.post(f"{server.http_url}/oauth/token", data={**form, "client_id": client["client_id"]})
    return http.post(f"{server.http_url}/oauth/token", data=form, auth=_basic(client))


def _basic(client: dict) -> httpx.BasicAuth | None:
    return (
        None if client.get("client_secret") is None else httpx.BasicAuth(client["client_id"], client["client_secret"])
    )


def _refresh_auth(client: dict) -> dict:
    """How requests-oauthlib authenticates a refresh: HTTP Basic with a secret, the client id without one."""
    if client["client_secret"] is None:
        return {"client_id": client["client_id"]}
    return {"auth": (client["client_id"], client["client_secret"])}


def _other_verifier(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=") + "x" * 10
