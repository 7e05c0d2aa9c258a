"""`openbms token`, `grant`, `grants`, `revoke`, `app`: the owner's consent and OAuth apps from the command line.

They work on the same database as `openbms serve` (`--db`), so a token printed here is
accepted by the server, and a revocation here ends the app's access at its next request.
"""

from __future__ import annotations

import argparse
import json
import os

from .store import DEFAULT_URL

DEFAULT_VEHICLE_ID = "OPENBMS0000000001"
DEFAULT_TTL_S = 30 * 24 * 3600


def add_commands(sub: argparse._SubParsersAction) -> None:
    for name, help_, run in (
        ("token", "grant an app access and print only its token", _token),
        ("grant", "grant an app access and print the grant (with its token) as JSON", _grant),
    ):
        p = sub.add_parser(
            name,
            help=help_,
            description=help_ + ". Scopes: read:<VSS path>, actuate:<VSS path> "
            "(a branch covers its signals; actuate also reads), or --owner for the owner's token.",
        )
        p.add_argument("--app", help="the app's name, as the owner will see it in grants and the audit log")
        p.add_argument(
            "--scope",
            nargs="+",
            action="extend",
            default=[],
            metavar="SCOPE",
            help="one or more scopes, the flag repeated or not: e.g. read:Vehicle.Powertrain.TractionBattery "
            "actuate:Vehicle.Powertrain.TractionBattery.Charging.ChargeLimit",
        )
        p.add_argument(
            "--owner",
            action="store_true",
            help="the owner's own token (scope 'owner': everything, plus the dashboard's owner endpoints)",
        )
        p.add_argument(
            "--ttl",
            type=float,
            default=DEFAULT_TTL_S,
            metavar="SECONDS",
            help="validity (default %(default)g s = 30 days)",
        )
        _add_store_options(p)
        p.set_defaults(run=run)

    p = sub.add_parser("grants", help="list the owner's grants", description="List every grant and its status.")
    _add_store_options(p)
    p.set_defaults(run=_grants)

    app = sub.add_parser(
        "app",
        help="register an app that will ask the owner for access through OAuth",
        description="Apps that ask the owner through OAuth 2.0 (code + PKCE) on the vehicle's "
        "consent page; the server's metadata is at /.well-known/oauth-authorization-server.",
    )
    app_sub = app.add_subparsers(dest="app_command", required=True, metavar="COMMAND")
    p = app_sub.add_parser("register", help="register an app; prints its client id (and secret, shown once)")
    p.add_argument("name", help="the app's name, as the owner will see it on the consent page")
    p.add_argument(
        "--redirect-uri",
        action="append",
        required=True,
        metavar="URI",
        help="where the owner's browser returns with the code (repeat for more; exact match)",
    )
    p.add_argument(
        "--public",
        action="store_true",
        help="an app that cannot keep a secret (a phone app): no client secret, PKCE alone",
    )
    _add_store_options(p)
    p.set_defaults(run=_register_app)
    p = app_sub.add_parser("list", help="list the registered apps")
    _add_store_options(p)
    p.set_defaults(run=_list_apps)

    p = sub.add_parser(
        "passport",
        help="write the battery's usage and health document (EU 2023/1542 Annex XIII)",
        description="The battery passport's usage document: state of health and of certified "
        "energy, throughput and cycles, time at temperature and state of charge, deep-discharge and "
        "over-temperature events, and the cell model's provenance, from what the BMS last saved.",
    )
    p.add_argument("-o", "--output", default="passport.json", help="the JSON document (default %(default)s)")
    _add_store_options(p)
    p.set_defaults(run=_passport)

    p = sub.add_parser(
        "revoke",
        help="revoke a grant now",
        description="Revoke a grant: its token stops working "
        "at its next request, and its live subscriptions end within a second.",
    )
    p.add_argument("grant_id")
    _add_store_options(p)
    p.set_defaults(run=_revoke)


def _add_store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=DEFAULT_URL, help="database URL, shared with `openbms serve` (default %(default)s)")
    p.add_argument(
        "--vehicle-id",
        default=os.environ.get("OPENBMS_VEHICLE_ID", DEFAULT_VEHICLE_ID),
        help="the vehicle tokens are bound to (default $OPENBMS_VEHICLE_ID or %(default)s)",
    )


def _authority(args):
    from .auth import Authority
    from .store import Store

    return Authority(Store(args.db), args.vehicle_id)


def _issue(args) -> tuple:
    if args.owner == bool(args.scope):
        raise ValueError("give either --scope SCOPE... or --owner")
    if not args.owner and not args.app:
        raise ValueError("--app NAME is required (the app the owner grants access to)")
    from .auth import COMMAND_LINE

    authority = _authority(args)
    grant = authority.grant(args.app or "owner", ["owner"] if args.owner else args.scope, args.ttl, by=COMMAND_LINE)
    return grant, authority.token(grant)


def _token(args) -> int:
    print(_issue(args)[1])
    return 0


def _grant(args) -> int:
    grant, token = _issue(args)
    print(json.dumps({**grant.as_dict(), "token": token}, indent=2))
    return 0


def _grants(args) -> int:
    import time

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"grants for {args.vehicle_id}")
    # In 80 columns: ids, dates and status whole (issued over expires); app and scopes folded, never cut short.
    for column in ("id", "app", "scopes", "valid (UTC)", "status"):
        folded = column in ("app", "scopes")
        table.add_column(column, no_wrap=not folded, overflow="fold" if folded else "ellipsis")
    now = time.time()
    for grant in _authority(args).grants():
        table.add_row(
            grant.id,
            grant.app,
            "\n".join(grant.scopes),
            f"{_utc(grant.issued_at)}\n{_utc(grant.expires_at)}",
            grant.status(now),
        )
    Console().print(table)
    return 0


def _revoke(args) -> int:
    from .auth import COMMAND_LINE

    _authority(args).revoke(args.grant_id, by=COMMAND_LINE)
    print(f"revoked {args.grant_id}")
    return 0


def _oauth_store(args):
    from .oauth_store import OAuthStore
    from .store import Store

    return OAuthStore(Store(args.db))


def _register_app(args) -> int:
    from .auth import COMMAND_LINE
    from .oauth_store import registration

    client, secret = _oauth_store(args).register(args.name, args.redirect_uri, args.public, registration(COMMAND_LINE))
    print(json.dumps({**client.as_dict(), "client_secret": secret}, indent=2))
    return 0


def _list_apps(args) -> int:
    print(json.dumps([client.as_dict() for client in _oauth_store(args).clients()], indent=2))
    return 0


def _passport(args) -> int:
    from pathlib import Path

    from ..runtime.passport import passport
    from .store import Store

    document = passport(Store(args.db), args.vehicle_id)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(
        f"wrote {out}: state of health {document['state_of_health']['capacity_percent']:.1f} %, "
        f"{document['throughput']['equivalent_full_cycles']:.1f} equivalent full cycles"
    )
    return 0


def _utc(time_s: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(time_s, timezone.utc).strftime("%Y-%m-%d %H:%M")
