"""`bank-pipeline reconnect [CONNECTION]`: renew a connection's consent (TrueLayer's
`/connections/extend`, or a new consent when the bank cannot extend) keeping its accounts and
history; see `bank_pipeline.connections.reconnect`."""

from __future__ import annotations

import argparse
import sys

from bank_pipeline.cli_args import int_between, number_between
from bank_pipeline.config import Settings
from bank_pipeline.db import open_database


def _ask(question: str) -> bool:
    """The user's reconfirmation, typed in the terminal (no terminal: not reconfirmed)."""
    if not sys.stdin.isatty():
        print(question + "(no terminal to answer in: pass --yes to reconfirm)", file=sys.stderr)
        return False
    return input(question).strip().lower() in ("y", "yes")


def _reconnect_cmd(args: argparse.Namespace) -> int:
    from bank_pipeline.connections.reconnect import reconnect

    settings = Settings.from_env()
    open_database(settings.database_url).dispose()  # the schema up to date first
    reconnect(
        settings,
        args.connection,
        confirm=(lambda question: print(question + "yes (--yes)") or True) if args.yes else _ask,
        simulator_user=args.simulator_user,
        open_browser=not args.no_browser,
        timeout=args.timeout,
        assume_simulator=args.simulator,
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reconnect",
        help="renew a connection's 90-day consent, keeping its accounts and history",
    )
    p.add_argument(
        "connection",
        nargs="?",
        type=int_between(1, 2**62, "a connection id"),
        help="the connection id `bank-pipeline status` shows (default: the only one)",
    )
    p.add_argument("--yes", action="store_true", help="I reconfirm: keep sharing my accounts for 90 more days")
    p.add_argument("--no-browser", action="store_true", help="print the link instead of opening a browser")
    p.add_argument("--simulator-user", metavar="NAME", help="answer the local simulator's pages as NAME")
    p.add_argument(
        "--simulator", action="store_true", help="the auth URL is a local simulator (allows --simulator-user)"
    )
    p.add_argument(
        "--timeout",
        type=number_between(1, 86400, "a number of seconds"),
        default=300,
        help="seconds to wait for the redirect (default 300)",
    )
    p.set_defaults(func=_reconnect_cmd)


__all__ = ["register"]
