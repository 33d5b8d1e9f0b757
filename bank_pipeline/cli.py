"""The `bank-pipeline` command line: a dispatcher over `bank_pipeline.commands.*`."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from bank_pipeline import commands
from bank_pipeline.errors import BankPipelineError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bank-pipeline",
        description="Import TrueLayer bank transactions and enrich them, on Dagster.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Our own progress at INFO; libraries (httpx, alembic, dagster) only warn unless -v.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("bank_pipeline").setLevel(logging.INFO)
    try:
        return int(args.func(args) or 0)
    except BankPipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader (e.g. `| head`) has had enough: not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
