"""`bank-pipeline export`: the enriched ledger of a date range as CSV, Parquet or beancount."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bank_pipeline.cli_args import add_date_range
from bank_pipeline.commands import configured_database
from bank_pipeline.errors import BankPipelineError

FORMATS = ("csv", "parquet", "beancount")  # as bank_pipeline.analytics.export.FORMATS (imported late)


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export",
        help="export the enriched ledger of a date range (CSV, Parquet or beancount)",
        description="Write booked transactions of a date range with their category, merchant and account, "
        "in stable columns (see docs/usage.md, Exports). Without --out, CSV and beancount go to "
        "standard output.",
    )
    add_date_range(export, required=True)
    export.add_argument("--format", dest="fmt", choices=FORMATS, required=True, help="file format")
    export.add_argument("--out", type=Path, metavar="PATH", help="file to write (replaced atomically)")
    export.add_argument(
        "--raw", action="store_true",
        help="CSV: write text cells verbatim; by default a cell a spreadsheet would run as a formula "
        "(starting with = + - @, a tab or a carriage return) gets a leading ' (docs/analytics.md)",
    )
    export.set_defaults(func=_export_cmd)


def _export_cmd(args: argparse.Namespace) -> int:
    from bank_pipeline.analytics.export import check_destination, export_ledger

    if args.date_to < args.date_from:
        raise BankPipelineError(f"--to {args.date_to} is before --from {args.date_from}")
    if args.out is not None:
        check_destination(args.out)
    elif args.fmt == "parquet" and sys.stdout.isatty():
        raise BankPipelineError("Parquet is binary: name a file with --out PATH (or redirect standard output)")
    with configured_database() as engine:
        rows, data = export_ledger(engine, args.date_from, args.date_to, args.fmt, args.out, raw=args.raw)
    if data is None:
        print(f"exported {rows} transaction(s) from {args.date_from} to {args.date_to} to {args.out}")
        return 0
    if args.fmt == "parquet":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        sys.stdout.write(data.decode("utf-8"))
    return 0
