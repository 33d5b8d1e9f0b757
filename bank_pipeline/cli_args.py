"""argparse types that refuse out-of-range values before they reach the database, and the
arguments several commands share.

A transaction id beyond BIGINT is a `NumericValueOutOfRange` on PostgreSQL and an `OverflowError`
on SQLite; a day count beyond `timedelta`'s range is an `OverflowError`. Checked here, each is
one line naming the argument and the accepted range.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from datetime import date

MAX_DATABASE_ID = 2**63 - 1  # BIGINT; SQLite's INTEGER has the same range


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def int_between(low: int, high: int, what: str = "a whole number") -> Callable[[str], int]:
    """An argparse type: an integer from `low` to `high` inclusive."""

    def parse(value: str) -> int:
        try:
            number = int(value.strip(), 10) if len(value) <= 40 else None
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{_shown(value)} is not {what} from {low} to {high}")
        return number

    return parse


def number_between(low: float, high: float, what: str = "a number") -> Callable[[str], float]:
    """An argparse type: a finite number from `low` to `high` inclusive."""

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and low <= number <= high):
            raise argparse.ArgumentTypeError(f"{_shown(value)} is not {what} from {low:g} to {high:g}")
        return number

    return parse


database_id = int_between(1, MAX_DATABASE_ID, "an id (a whole number)")
port = int_between(0, 65535, "a port")


def iso_date(value: str) -> date:
    """An argparse type: a calendar date written YYYY-MM-DD."""
    try:
        return date.fromisoformat(value) if len(value) == 10 else date.fromisoformat("invalid")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_shown(value)} is not a date (YYYY-MM-DD)") from None


# The arguments several commands share, declared once so they read and check the same everywhere.


def add_date_range(
    parser: argparse.ArgumentParser, *, required: bool, first: str = "first day", last: str = "last day (inclusive)"
) -> None:
    """`--from DATE --to DATE` as `args.date_from` / `args.date_to` (dates, checked by `iso_date`)."""
    parser.add_argument("--from", dest="date_from", type=iso_date, required=required, metavar="DATE", help=first)
    parser.add_argument("--to", dest="date_to", type=iso_date, required=required, metavar="DATE", help=last)


def add_account_filter(parser: argparse.ArgumentParser, default: str = "all") -> None:
    """`--account KEY`, repeatable, as `args.accounts` (None: no filter)."""
    parser.add_argument(
        "--account", dest="accounts", action="append", metavar="KEY",
        help=f"account partition key (repeat for several; default: {default})",
    )  # fmt: skip


def add_actions(parser: argparse.ArgumentParser, dest: str = "action") -> argparse._SubParsersAction:
    """A command's required sub-actions (`transfers list|reject|…`), parsed like the command."""
    actions = parser.add_subparsers(dest=dest, metavar="ACTION")
    actions.required = True
    return actions
