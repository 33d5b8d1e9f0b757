"""The `bank-pipeline` command line: a dispatcher over `bank_pipeline.commands.*`."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import re
import sys
from typing import NoReturn

from sqlalchemy.exc import StatementError

from bank_pipeline import commands
from bank_pipeline.errors import BankPipelineError

log = logging.getLogger(__name__)

# `scheme://user:secret@host` and `password=secret` in a driver's message: never printed.
_CREDENTIALS = re.compile(r"(?P<head>://[^:/@\s]*:)[^@\s]*@|(?P<key>password\s*=\s*)\S+", re.IGNORECASE)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def database_error_line(exc: StatementError) -> str:
    """A database error as one line: the driver's class and first message line, credentials
    removed - never the SQL or its parameters, which SQLAlchemy's own message includes."""
    orig = exc.orig if exc.orig is not None else exc
    first = (str(orig).strip().splitlines() or [""])[0]
    first = _CREDENTIALS.sub(lambda m: f"{m['head']}***@" if m["head"] else f"{m['key']}***", first)
    return f"the database refused the request ({orig.__class__.__name__}): {first[:300]}"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bank-pipeline",
        description="Import TrueLayer bank transactions and enrich them, on Dagster.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
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
    except StatementError as exc:  # e.g. a value the database cannot hold, or it is unreachable
        log.debug("database error", exc_info=args.verbose)
        print(f"error: {database_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader (e.g. `| head`) has had enough: not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
