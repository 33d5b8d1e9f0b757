"""`bank-pipeline report`: monthly spending (the `monthly_spending` asset) as a table or an HTML page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bank_pipeline.cli_args import int_between
from bank_pipeline.commands import configured_database
from bank_pipeline.errors import BankPipelineError

FIRST_MONTH, LAST_MONTH = "1900-01", "9998-12"  # the report also reads the months around --month


def _month(value: str):
    from bank_pipeline.analytics.monthly import parse_month

    try:
        month = parse_month(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a month (YYYY-MM): {value!r}") from None
    if not parse_month(FIRST_MONTH) <= month <= parse_month(LAST_MONTH):
        # 9999-12 has no next month and 0001-01 no previous one: an OverflowError, not a report
        raise argparse.ArgumentTypeError(f"not a month from {FIRST_MONTH} to {LAST_MONTH}: {value!r}")
    return month


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="monthly spending per account and category (income, spending, net, change), as text or HTML",
        description="Print one month of the `monthly_spending` asset: income, spending (own-account transfers "
        "excluded, card repayments too) and net per account and category, with the change against the previous "
        "month. The figures are computed from the ledger when the command runs; --refresh also stores them in "
        "the `monthly_spending` table (the asset Dagster shows).",
    )
    parser.add_argument("--month", type=_month, required=True, metavar="YYYY-MM", help="the month to show")
    parser.add_argument(
        "--months", type=int_between(1, 120, "a number of months"), default=6, metavar="N",
        help="months shown in the HTML chart, ending with --month (default 6)",
    )
    parser.add_argument("--html", type=Path, metavar="FILE", help="also write a self-contained HTML page with a chart")
    parser.add_argument(
        "--refresh", action="store_true",
        help="also store the months shown in the monthly_spending table (outside Dagster)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with configured_database() as engine:
        return _report(args, engine)


def _report(args: argparse.Namespace, engine) -> int:
    import sqlalchemy as sa

    from bank_pipeline.analytics import monthly
    from bank_pipeline.analytics.report import html_page, text_table
    from bank_pipeline.db.schema import accounts

    month = args.month
    months = [month]
    while len(months) < max(args.months, 2):  # the previous month too, for the change column
        months.insert(0, monthly.previous_month(months[0]))
    if args.refresh:
        with engine.connect() as conn:
            ids = list(conn.execute(sa.select(accounts.c.id)).scalars())
        monthly.refresh(engine, {account_id: months for account_id in ids}, run_id="cli-report")
        print(f"recomputed {len(ids)} account(s) × {len(months)} month(s) from the ledger", file=sys.stderr)

    frame = monthly.live_month_with_changes(engine, month)
    asof = frame.attrs["asof"]
    partial = monthly.incomplete_months(engine, months)
    gaps = sorted({m for (_, m) in partial})
    if monthly.previous_month(month) in gaps:
        print(f"note: {months[-2]:%Y-%m} is not wholly imported; Δ against it is left out (–)", file=sys.stderr)
    if month in gaps:
        print(f"note: {month:%Y-%m} is not wholly imported (yet): its figures cover the days imported", file=sys.stderr)
    print(f"Monthly spending {month:%Y-%m} as of {asof:%Y-%m-%d %H:%M:%S %Z} (own-account transfers excluded; "
          f"Δ = change against {months[-2]:%Y-%m})")
    print(text_table(frame) if not frame.empty else "no transactions in this month")
    if args.html:
        history = monthly.live(engine, months)
        page = html_page(month, frame, history, months, asof=asof, partial=gaps)
        try:
            args.html.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise BankPipelineError(f"cannot write {args.html}: {exc.strerror or exc}") from None
        print(f"wrote {args.html}")
    return 0
