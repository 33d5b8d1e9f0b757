"""Database helpers shared by the ingest stages (both SQLite and PostgreSQL).

Every helper works on batches: one statement per batch (or per chunk of a large batch), never one
per transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from bank_pipeline.db import write_transaction
from bank_pipeline.db.dialect import chunks, insert, is_postgres
from bank_pipeline.db.schema import raw_fetches
from bank_pipeline.timestamps import aware

__all__ = ["chunks", "is_postgres", "write_transaction"]  # re-exported for the stages

# Keys per IN list (SQLite allows 32,766 bind parameters, PostgreSQL 65,535).
CHUNK_KEYS = 5000






def _copy_values(table: sa.Table, columns: Sequence[str], rows: Iterable[dict]) -> Iterator[tuple]:
    json_cols = {c for c in columns if isinstance(table.c[c].type, sa.JSON)}
    for row in rows:
        yield tuple(
            json.dumps(row[c]) if c in json_cols and row.get(c) is not None else row.get(c) for c in columns
        )


def bulk_insert(conn: Connection, table: sa.Table, rows: list[dict]) -> int:
    """Plain insert of many rows: COPY on PostgreSQL, one executemany on SQLite."""
    if not rows:
        return 0
    if is_postgres(conn):
        columns = list(rows[0])
        copy_rows(conn, table.name, columns, _copy_values(table, columns, rows))
    else:
        conn.execute(table.insert(), rows)
    return len(rows)


def insert_ignore(conn: Connection, table: sa.Table, rows: list[dict], index_elements: list[str]) -> int:
    """`INSERT … ON CONFLICT (index_elements) DO NOTHING` of many rows; returns the rows inserted.

    PostgreSQL: COPY into a temporary table, then one `INSERT … SELECT … ON CONFLICT DO NOTHING`
    (exact rowcount). SQLite: one cached statement with a parameter list, which SQLAlchemy's
    "insertmanyvalues" sends as multi-row INSERTs; RETURNING makes the count exact.
    All rows must have the same keys.
    """
    if not rows:
        return 0
    if is_postgres(conn):
        columns = list(rows[0])
        cols = ", ".join(columns)
        temp = f"_ins_{table.name}_{hashlib.sha1(cols.encode()).hexdigest()[:8]}"
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE IF NOT EXISTS {temp} ON COMMIT DROP AS SELECT {cols} FROM {table.name} WITH NO DATA"
        )
        conn.exec_driver_sql(f"TRUNCATE {temp}")
        copy_rows(conn, temp, columns, _copy_values(table, columns, rows))
        conflict = ", ".join(index_elements)
        result = conn.exec_driver_sql(
            f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {temp} ON CONFLICT ({conflict}) DO NOTHING"
        )
        return result.rowcount
    stmt = (
        insert(conn, table)
        .on_conflict_do_nothing(index_elements=index_elements)
        .returning(table.c[index_elements[0]])
    )
    return len(conn.execute(stmt, rows).all())


def as_days(days: Iterable[dt.date | str]) -> list[dt.date]:
    """Sorted, distinct dates (accepts ISO strings, e.g. Dagster partition keys)."""
    out = set()
    for day in days:
        if isinstance(day, dt.datetime):
            out.add(day.date())
        elif isinstance(day, dt.date):
            out.add(day)
        else:
            out.add(dt.date.fromisoformat(str(day)))
    return sorted(out)


def as_date(value: Any) -> dt.date:
    """A Date column's value as a date (SQLite text is parsed)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def latest_booked_fetches(conn: Connection, account_id: int, days: list[dt.date]) -> dict[dt.date, int]:
    """For each day, the id of the latest successful booked fetch whose window covers it (one query).

    A later fetch supersedes earlier ones: that is how late postings and corrections arrive.
    Days no fetch covers are absent from the result.
    """
    if not days:
        return {}
    rows = conn.execute(
        sa.select(raw_fetches.c.id, raw_fetches.c.window_from, raw_fetches.c.window_to)
        .where(
            raw_fetches.c.account_id == account_id,
            raw_fetches.c.kind == "booked",
            raw_fetches.c.error.is_(None),
            raw_fetches.c.window_from <= days[-1],
            raw_fetches.c.window_to >= days[0],
        )
        .order_by(raw_fetches.c.id)
    ).all()
    fetches = [(fid, as_date(wf), as_date(wt)) for fid, wf, wt in rows]
    latest: dict[dt.date, int] = {}
    for fid, start, end in fetches:  # ascending id: later fetches overwrite earlier ones
        for day in days:
            if start <= day <= end:
                latest[day] = fid
    return latest


def fresh_fetches(conn: Connection, fetch_ids: set[int], since: dt.datetime) -> set[int]:
    """Which of `fetch_ids` landed at or after `since`."""
    if not fetch_ids:
        return set()
    rows = conn.execute(
        sa.select(raw_fetches.c.id, raw_fetches.c.fetched_at).where(raw_fetches.c.id.in_(sorted(fetch_ids)))
    ).all()
    return {fid for fid, at in rows if aware(at) >= since}


def latest_pending_fetch(conn: Connection, account_id: int) -> int | None:
    """The id of the account's latest successful pending fetch, if any."""
    return conn.execute(
        sa.select(sa.func.max(raw_fetches.c.id)).where(
            raw_fetches.c.account_id == account_id,
            raw_fetches.c.kind == "pending",
            raw_fetches.c.error.is_(None),
        )
    ).scalar()


def fetch_day_filter(fetch_col: sa.ColumnElement, date_col: sa.ColumnElement, latest: dict[dt.date, int]):
    """A WHERE clause selecting rows of (fetch, day) pairs: contiguous runs of days served by the same
    fetch collapse into one `fetch_id = f AND day BETWEEN a AND b` term, so a year of days read
    through five 90-day windows is five terms."""
    terms = []
    run: list[Any] | None = None
    for day in sorted(latest):
        fid = latest[day]
        if run and run[0] == fid and run[2] + dt.timedelta(days=1) == day:
            run[2] = day
        else:
            if run:
                terms.append(run)
            run = [fid, day, day]
    if run:
        terms.append(run)
    if not terms:
        return sa.false()
    if len(terms) <= 50:
        return sa.or_(*(sa.and_(fetch_col == f, date_col.between(a, b)) for f, a, b in terms))
    # Many scattered days: a flat tuple IN list (no deep OR tree for SQLite's parser).
    return sa.tuple_(fetch_col, date_col).in_([(fid, day) for day, fid in sorted(latest.items())])


def copy_rows(
    conn: Connection, table_name: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """PostgreSQL only: COPY rows into `table_name` through psycopg 3's `cursor.copy`."""
    dbapi = conn.connection.driver_connection
    cols = ", ".join(columns)
    with dbapi.cursor() as cur:
        with cur.copy(f"COPY {table_name} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
