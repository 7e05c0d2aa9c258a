"""`openbms token`, `grant`, `grants`, `revoke`, run in-process on one database, as `openbms serve` would share it."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest

from openbms.cli import main
from openbms.vehicle.auth import Authority
from openbms.vehicle.store import Store

SCOPE = "read:Vehicle.Powertrain.TractionBattery.StateOfCharge"


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'openbms.db'}"


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.lstrip().startswith("error:"), err
    return re.sub(r"\s+", " ", err)


def test_token_prints_only_a_token_the_server_accepts(db, capsys):
    assert main(["token", "--app", "charger", "--scope", SCOPE, "--ttl", "60", "--db", db, "--vehicle-id", "VIN7"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.count(".") == 2 and "\n" not in token
    access = Authority(Store(db), "VIN7").verify(token)
    assert access.app == "charger" and access.scopes == (SCOPE,)


def test_every_scope_is_kept_whether_the_flag_is_repeated_or_not(db, capsys):
    limit = "actuate:Vehicle.Powertrain.TractionBattery.Charging.ChargeLimit"
    health = "read:Vehicle.Powertrain.TractionBattery.StateOfHealth"
    assert main(["token", "--app", "a", "--scope", SCOPE, limit, "--scope", health, "--db", db]) == 0
    access = Authority(Store(db), "OPENBMS0000000001").verify(capsys.readouterr().out.strip())
    assert access.scopes == (SCOPE, limit, health)


def test_owner_token(db, capsys):
    assert main(["token", "--owner", "--db", db]) == 0
    assert Authority(Store(db), "OPENBMS0000000001").verify(capsys.readouterr().out.strip()).is_owner


def test_grant_grants_and_revoke(db, capsys):
    assert main(["grant", "--app", "fleet", "--scope", SCOPE, "--db", db]) == 0
    grant = json.loads(capsys.readouterr().out)
    assert grant["app"] == "fleet" and grant["scopes"] == [SCOPE] and grant["token"]
    assert re.fullmatch(r"[0-9a-f]{24}", grant["id"])  # never begins with "-", which revoke would take for an option

    assert main(["grants", "--db", db]) == 0
    table = capsys.readouterr().out
    assert grant["id"] in table and "active" in table

    assert main(["revoke", grant["id"], "--db", db]) == 0
    assert f"revoked {grant['id']}" in capsys.readouterr().out
    main(["grants", "--db", db])
    assert "revoked" in capsys.readouterr().out
    assert main(["app", "register", "Other App", "--redirect-uri", "https://app.example/cb", "--db", db]) == 0
    client_id = json.loads(capsys.readouterr().out)["client_id"]
    audit = Store(db).audit()  # the owner's changes at the command line are audited with them, newest first
    assert [(r.app, r.path, r.applied, r.accepted) for r in audit] == [
        ("owner (command line)", "owner:clients", client_id, True),
        ("owner (command line)", f"owner:grants/{grant['id']}", grant["id"], True),
        ("owner (command line)", "owner:grants", grant["id"], True),
    ]


def test_grants_fit_an_80_column_terminal_without_cutting_ids_or_dates(db, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    long_scopes = [
        "read:Vehicle.Powertrain.TractionBattery",
        "actuate:Vehicle.Powertrain.TractionBattery.Charging.ChargeLimit",
    ]
    assert main(["grant", "--app", "other-brand-app", "--scope", *long_scopes, "--ttl", "86400", "--db", db]) == 0
    grant = json.loads(capsys.readouterr().out)
    assert main(["grants", "--db", db]) == 0
    table = capsys.readouterr().out
    assert max(len(line) for line in table.splitlines()) <= 80 and "…" not in table
    assert grant["id"] in table
    for when in (grant["issued_at"], grant["expires_at"]):
        assert datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%d %H:%M") in table
    scopes = "".join(line.split("│")[3].strip() for line in table.splitlines() if line.startswith("│"))
    assert scopes == "".join(long_scopes)  # folded, not cut


@pytest.mark.parametrize(
    "argv, message",
    [
        (["token", "--app", "x", "--scope", "read:Vehicle.Nope"], "'Vehicle.Nope' is not a signal or branch"),
        (
            ["token", "--app", "x", "--scope", "drive:Vehicle"],
            "must be 'read:<path>', 'actuate:<path>', 'health' or 'owner'",
        ),
        (["token", "--scope", SCOPE], "--app NAME is required"),
        (["token", "--app", "x"], "give either --scope SCOPE... or --owner"),
        (["token", "--app", "x", "--scope", SCOPE, "--ttl", "-5"], "ttl must be between 1 s"),
        (["revoke", "no-such-grant"], "no grant with id 'no-such-grant'"),
    ],
)
def test_bad_input_is_exit_2_with_a_clear_message(db, capsys, argv, message):
    assert main([*argv, "--db", db]) == 2
    assert message in _error(capsys)


def test_a_malformed_database_url_is_exit_2(capsys):
    assert main(["grants", "--db", "not a url"]) == 2
    assert "is not a database URL" in _error(capsys)
