"""`bank-pipeline connect`, `status` and `rotate-keys`: parse the arguments, call the library
(`bank_pipeline.connections`, `bank_pipeline.crypto`), print the outcome.

`connect` runs the OAuth flow of `bank_pipeline.connections.flow` and then, unless
`--history-days 0`, lands and imports the history while the user is present.
`--simulator-user NAME` answers the local simulator's consent page unattended (simulator only).
"""

from __future__ import annotations

import argparse
import datetime as dt

from bank_pipeline import clock
from bank_pipeline.cli_args import int_between, number_between, port
from bank_pipeline.config import MAX_HISTORY_DAYS, Settings
from bank_pipeline.connections import format_status, status_summary
from bank_pipeline.connections.flow import connect
from bank_pipeline.crypto import TokenCipher, rotate_stored_tokens
from bank_pipeline.db import open_database

REJECTIONS_SHOWN_DAYS = 7  # `status` lists refused webhook requests of the last week


def _connect_cmd(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    open_database(settings.database_url).dispose()  # the schema up to date before connecting
    if args.providers:
        providers = " ".join(p for chunk in args.providers for p in chunk.replace(",", " ").split())
    else:
        providers = None
    result = connect(
        settings,
        simulator_user=args.simulator_user,
        open_browser=not args.no_browser,
        timeout=args.timeout,
        providers=providers,
        redirect_port=args.redirect_port,
        response_mode="form_post" if args.form_post else None,
        assume_simulator=args.simulator,
    )
    from bank_pipeline.history import (
        history_window,
        import_history,
        land_history,
        land_mandates,
        record_partitions_start,
    )

    engine = open_database(settings.database_url)
    try:
        record_partitions_start(settings, engine)
    finally:
        engine.dispose()
    print("Fetching direct debits and standing orders while you are here (attended calls):")
    land_mandates(settings, result.connection_id, result.accounts)
    if args.history_days == 0:
        return 0
    from bank_pipeline.commands.imports import dagster_instance, report_runs

    window = history_window(settings, args.history_days)
    print(f"Fetching history {window.first}..{window.last} while you are here (attended calls, inside the "
          "bank's SCA window):")
    land_history(settings, result.connection_id, result.accounts, window)
    print("Importing it through Dagster (runs replay what landed; no bank call):")
    with dagster_instance(settings) as instance:
        outcomes = import_history(instance, settings, [a["account_key"] for a in result.accounts], window)
    return report_runs(outcomes)


def _status_cmd(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    engine = open_database(settings.database_url)
    try:
        print(format_status(status_summary(engine, within_days=args.warn_days)))
        from bank_pipeline.webhooks.rejections import format_rejections, rejection_summary

        since = clock.today_utc() - dt.timedelta(days=REJECTIONS_SHOWN_DAYS - 1)
        rejected = rejection_summary(engine, since)
        if rejected:
            print(format_rejections(rejected, since))
    finally:
        engine.dispose()
    return 0


def _rotate_cmd(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    engine = open_database(settings.database_url)
    try:
        count = rotate_stored_tokens(engine, TokenCipher.from_settings(settings))
    finally:
        engine.dispose()
    print(f"re-encrypted {count} stored secret(s) under the first key; older keys can now be removed")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("connect", help="connect a bank through TrueLayer (OAuth with PKCE)")
    p.add_argument("--no-browser", action="store_true", help="print the link instead of opening a browser")
    p.add_argument(
        "--redirect-port", type=port, default=None, help="port of the local redirect URI (0: any free port)"
    )
    p.add_argument(
        "--simulator-user",
        metavar="NAME",
        help="answer the local simulator's consent as NAME (simulator only)",
    )
    p.add_argument(
        "--simulator", action="store_true", help="the auth URL is a local simulator (allows --simulator-user)"
    )
    p.add_argument(
        "--history-days",
        type=int_between(0, MAX_HISTORY_DAYS, "a number of days"),
        default=None,
        metavar="N",
        help="days of history to import right away (default BANK_PIPELINE_HISTORY_DAYS, 730; 0: none)",
    )
    p.add_argument(
        "--providers",
        nargs="+",
        metavar="PROVIDER",
        help="restrict the bank picker (e.g. uk-ob-all uk-oauth-all)",
    )
    p.add_argument("--form-post", action="store_true", help="ask for response_mode=form_post")
    p.add_argument(
        "--timeout",
        type=number_between(1, 86400, "a number of seconds"),
        default=300,
        help="seconds to wait for the redirect (default 300)",
    )
    p.set_defaults(func=_connect_cmd)

    s = subparsers.add_parser("status", help="connections, consent expiry and accounts (no secrets)")
    s.add_argument(
        "--warn-days",
        type=int_between(0, 3650, "a day count"),
        default=7,
        help="warn when consent ends within this many days",
    )
    s.set_defaults(func=_status_cmd)

    r = subparsers.add_parser(
        "rotate-keys", help="re-encrypt stored tokens under the first BANK_PIPELINE_FERNET_KEYS key"
    )
    r.set_defaults(func=_rotate_cmd)


__all__ = ["register"]
