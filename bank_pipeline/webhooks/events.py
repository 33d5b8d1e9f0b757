"""Storing verified webhook events and rejections, and handing stored events to the sensor.

The receiver only records; a Dagster sensor reads `pending_events`, launches runs, then calls
`mark_processed`. `event_id` is unique, so a replayed webhook is stored once.

Rejections are counters, not a log: one row per UTC day, status, reason and source bucket (a
hash of the sender's network into `SOURCE_BUCKETS`), incremented in place, so a flood of
requests costs no new rows; rows older than `REJECTION_RETENTION_DAYS` are deleted. A row keeps
the first sender's network and escaped detail as a sample and the last body's SHA-256 - never a
body or a signature.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import accounts, webhook_events, webhook_rejections
from bank_pipeline.webhooks.untrusted import SOURCE_BUCKETS, source_bucket

REJECTION_RETENTION_DAYS = 90


def store_event(
    engine: Engine,
    *,
    event_id: str,
    event_type: str,
    provider_account_id: str | None,
    payload: str,
) -> bool:
    """Insert the event unless its event_id is already stored; True when it was new."""
    values = {
        "event_id": event_id,
        "event_type": event_type,
        "provider_account_id": provider_account_id,
        "payload": payload,
        "received_at": utcnow(),
    }
    dialect = engine.dialect.name
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = (
            insert(webhook_events)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(webhook_events.c.id)
        )
        with engine.begin() as conn:
            return conn.execute(stmt).scalar_one_or_none() is not None
    try:
        with engine.begin() as conn:
            conn.execute(webhook_events.insert().values(**values))
        return True
    except IntegrityError:
        return False


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def record_rejection(
    engine: Engine,
    *,
    status_code: int,
    reason: str,
    detail: str = "",
    source: str = "unknown",
    body: bytes = b"",
    buckets: int = SOURCE_BUCKETS,
    retention_days: int = REJECTION_RETENTION_DAYS,
) -> int:
    """Count one refused request; returns the row's count. `reason` must be a fixed phrase and
    `detail`/`source` already escaped (`untrusted.escape`, `untrusted.source_network`)."""
    seen = utcnow()
    day = seen.date()
    values = {
        "day": day,
        "status_code": status_code,
        "reason": reason[:64],
        "source_bucket": source_bucket(source, buckets),
        "count": 1,
        "first_seen": seen,
        "last_seen": seen,
        "sample_source": source[:64],
        "sample_detail": detail[:300] or None,
        "last_body_sha256": body_sha256(body),
    }
    key = ["day", "status_code", "reason", "source_bucket"]
    table = webhook_rejections
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=key,
        set_={
            "count": table.c.count + 1,
            "last_seen": stmt.excluded.last_seen,
            "last_body_sha256": stmt.excluded.last_body_sha256,
        },
    ).returning(table.c.count)
    with engine.begin() as conn:
        count = conn.execute(stmt).scalar_one()
        if count == 1:  # a new row (a few per day): the moment to drop expired ones
            conn.execute(table.delete().where(table.c.day < day - dt.timedelta(days=retention_days)))
    return count


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


def pending_events(engine: Engine, limit: int = 100) -> list[dict[str, Any]]:
    """Unprocessed events, oldest first.

    Each dict: id, event_id, event_type, provider_account_id, account_key (the Dagster
    partition key of the matching account, or None when no account has that provider id),
    payload (the parsed JSON body), received_at.
    """
    with engine.connect() as conn:
        rows = (
            conn.execute(
                sa.select(webhook_events)
                .where(webhook_events.c.processed_at.is_(None))
                .order_by(webhook_events.c.id)
                .limit(limit)
            )
            .mappings()
            .all()
        )
        provider_ids = {row["provider_account_id"] for row in rows if row["provider_account_id"]}
        keys: dict[str, str] = {}
        if provider_ids:
            for provider_id, key, active in conn.execute(
                sa.select(accounts.c.provider_account_id, accounts.c.account_key, accounts.c.active)
                .where(accounts.c.provider_account_id.in_(provider_ids))
                .order_by(accounts.c.id)
            ):
                # Prefer an active account if a provider id was ever reused.
                if provider_id not in keys or active:
                    keys[provider_id] = key
    return [
        {
            "id": row["id"],
            "event_id": row["event_id"],
            "event_type": row["event_type"],
            "provider_account_id": row["provider_account_id"],
            "account_key": keys.get(row["provider_account_id"]),
            "payload": json.loads(row["payload"]),
            "received_at": row["received_at"],
        }
        for row in rows
    ]


def mark_processed(engine: Engine, event_ids: Iterable[str], run_key: str | None) -> int:
    """Mark events processed (by the run with `run_key`, or None if no run was needed).

    Already-processed events are left untouched; returns how many were marked.
    """
    ids = list(dict.fromkeys(event_ids))
    if not ids:
        return 0
    with engine.begin() as conn:
        result = conn.execute(
            webhook_events.update()
            .where(webhook_events.c.event_id.in_(ids), webhook_events.c.processed_at.is_(None))
            .values(processed_at=utcnow(), run_key=run_key)
        )
        return result.rowcount
