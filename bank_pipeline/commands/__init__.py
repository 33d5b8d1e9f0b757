"""`bank-pipeline` subcommands: each module here exposes `register(subparsers)`.

`register` adds one or more subparsers and sets `func=<callable(args) -> int>` on each.
Modules are discovered, so adding a command never means editing a shared file. What several
commands share lives here (`configured_database`) or in `bank_pipeline.cli_args` (arguments).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine


@contextmanager
def configured_database() -> Iterator[Engine]:
    """The database the settings name, schema brought up to date, disposed of when the command is
    done: how a command that only reads or edits the ledger opens it (imported late, like every
    command's dependencies, so that `--help` stays fast)."""
    from bank_pipeline.config import Settings
    from bank_pipeline.db import open_database

    engine = open_database(Settings.from_env().database_url)
    try:
        yield engine
    finally:
        engine.dispose()
