"""Counting refused webhook requests in bounded storage, written by one writer at a time.

Rejections are counters, not a log: one row per UTC day, status, reason (a fixed phrase) and
source bucket (a hash of the sender's network into `SOURCE_BUCKETS`), incremented in place, so a
flood of requests adds no rows; rows older than `RETENTION_DAYS` are deleted. A row keeps the
first sender's network and escaped detail as a sample and the last body's SHA-256 - never a body
or a signature. `RejectionCounter` gathers counts in memory on the event loop and writes them in
one transaction at a time, so a flood uses one thread and one database connection, never the
ones a genuine webhook needs; each refused request still waits until its count is written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from bank_pipeline.db import utcnow
from bank_pipeline.db.dialect import insert
from bank_pipeline.db.schema import webhook_rejections
from bank_pipeline.webhooks.untrusted import SOURCE_BUCKETS, source_bucket

log = logging.getLogger(__name__)

RETENTION_DAYS = 90
_KEY = ("day", "status_code", "reason", "source_bucket")


def rejection_row(
    *,
    status_code: int,
    reason: str,
    detail: str = "",
    source: str = "unknown",
    body: bytes = b"",
    buckets: int = SOURCE_BUCKETS,
    seen: dt.datetime | None = None,
) -> dict[str, Any]:
    """One refused request as a counter row. `reason` must be a fixed phrase, `detail` and `source`
    already escaped (`untrusted.escape`, `untrusted.source_network`)."""
    seen = seen or utcnow()
    return {
        "day": seen.date(),
        "status_code": status_code,
        "reason": reason[:64],
        "source_bucket": source_bucket(source, buckets),
        "count": 1,
        "first_seen": seen,
        "last_seen": seen,
        "sample_source": source[:64],
        "sample_detail": detail[:300] or None,
        "last_body_sha256": hashlib.sha256(body).hexdigest(),
    }


def write_rejections(
    engine: Engine, rows: Iterable[dict[str, Any]], retention_days: int = RETENTION_DAYS
) -> None:
    """Add counter rows (upsert: counts add up, the first sample stays) in one transaction."""
    table = webhook_rejections
    created = None
    with engine.begin() as conn:
        for row in rows:
            stmt = insert(conn, table).values(**row)
            stmt = stmt.on_conflict_do_update(
                index_elements=list(_KEY),
                set_={
                    "count": table.c.count + stmt.excluded.count,
                    "last_seen": stmt.excluded.last_seen,
                    "last_body_sha256": stmt.excluded.last_body_sha256,
                },
            ).returning(table.c.count)
            if conn.execute(stmt).scalar_one() == row["count"]:
                created = row["day"]
        if created is not None:  # a new row (a few per day): the moment to drop expired ones
            conn.execute(table.delete().where(table.c.day < created - dt.timedelta(days=retention_days)))


def record_rejection(engine: Engine, **row_fields: Any) -> None:
    """Count one refused request now (see `rejection_row` for the fields)."""
    write_rejections(engine, [rejection_row(**row_fields)])


class RejectionCounter:
    """Counts refused requests in memory and writes them in batches, one transaction at a time.

    Used from the receiver's event loop only. Pending counts are keyed like the table, so memory is
    bounded by the same key space however many requests arrive."""

    def __init__(self, engine: Engine, *, buckets: int = SOURCE_BUCKETS) -> None:
        self._engine = engine
        self._buckets = buckets
        self._pending: dict[tuple, dict[str, Any]] = {}
        self._written: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None

    async def count(self, *, status_code: int, reason: str, detail: str, source: str, body: bytes) -> None:
        """Count one refusal and wait until it is written (or the write failed and was logged)."""
        row = rejection_row(
            status_code=status_code,
            reason=reason,
            detail=detail,
            source=source,
            body=body,
            buckets=self._buckets,
        )
        key = tuple(row[k] for k in _KEY)
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = row
        else:
            pending["count"] += 1
            pending["last_seen"] = row["last_seen"]
            pending["last_body_sha256"] = row["last_body_sha256"]
        if self._written is None:
            self._written = asyncio.get_running_loop().create_future()
        written = self._written
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write_all())
        await asyncio.shield(written)

    async def _write_all(self) -> None:
        try:
            while self._pending:
                batch, self._pending = list(self._pending.values()), {}
                written, self._written = self._written, None
                try:
                    await run_in_threadpool(write_rejections, self._engine, batch)
                except Exception as exc:  # counting must never turn a refusal into a 500
                    log.error(
                        "could not count %d webhook rejection(s): %s", len(batch), exc.__class__.__name__
                    )
                finally:
                    if written is not None and not written.done():
                        written.set_result(None)
        finally:
            self._writer = None


def rejection_summary(engine: Engine, since: dt.date) -> list[dict[str, Any]]:
    """Refused requests since `since` per status and reason: count, source buckets, last seen."""
    t = webhook_rejections
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                t.c.status_code,
                t.c.reason,
                sa.func.sum(t.c.count).label("count"),
                sa.func.count(sa.distinct(t.c.source_bucket)).label("sources"),
                sa.func.max(t.c.last_seen).label("last_seen"),
            )
            .where(t.c.day >= since)
            .group_by(t.c.status_code, t.c.reason)
            .order_by(sa.desc("count"), t.c.reason)
        ).mappings()
        return [{**row, "count": int(row["count"])} for row in rows]


def format_rejections(summary: list[dict[str, Any]], since: dt.date) -> str:
    """`rejection_summary` as text for `bank-pipeline status`."""
    total = sum(row["count"] for row in summary)
    lines = [f"webhook requests refused since {since} (UTC): {total}"]
    for row in summary:
        last = row["last_seen"]
        last_text = f"{last:%Y-%m-%d %H:%M}" if isinstance(last, dt.datetime) else str(last)
        lines.append(
            f"  {row['count']:>8}  {row['status_code']} {row['reason']} "
            f"({row['sources']} source bucket(s), last {last_text})"
        )
    return "\n".join(lines)
