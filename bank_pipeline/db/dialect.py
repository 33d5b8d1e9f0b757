"""The one place that picks SQL by database: SQLite and PostgreSQL both speak `INSERT … ON CONFLICT`,
through their own SQLAlchemy dialect modules."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Table
from sqlalchemy.dialects import postgresql, sqlite


def is_postgres(bind: Connection | Engine) -> bool:
    return bind.dialect.name == "postgresql"


def insert(bind: Connection | Engine, table: Table):
    """`INSERT INTO table` in the bind's dialect, so `.on_conflict_do_nothing/_do_update` are available."""
    return (postgresql if is_postgres(bind) else sqlite).insert(table)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """`items` in slices of at most `size` (bind-parameter limits, batch sizes)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
