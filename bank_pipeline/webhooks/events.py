"""Storing verified webhook events and rejections, and handing stored events to the sensor.

The receiver only records; a Dagster sensor reads `pending_events`, launches runs, then calls
`mark_processed`. `event_id` is unique, so a replayed webhook is stored once. Refused requests
are counted in `rejections`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from bank_pipeline.db import utcnow
from bank_pipeline.db.dialect import insert
from bank_pipeline.db.schema import accounts, webhook_events


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
    stmt = (
        insert(engine, webhook_events)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(webhook_events.c.id)
    )
    with engine.begin() as conn:
        return conn.execute(stmt).scalar_one_or_none() is not None


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
