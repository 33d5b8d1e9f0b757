"""The model queue: new descriptions wait here, answered provisionally by the offline tiers, until
a full batch has gathered or the oldest has waited long enough.

A daily run sees a handful of new descriptions; calling the model for each handful pays the
instructions (the prompt prefix) every day for a few answers. Queued, the same descriptions share
one call per `batch` of them, whatever the run shape; the provisional answers are shown meanwhile
and replaced when the model answers (never over an override: `service._write` guards that).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select, update

from bank_pipeline.db.schema import enrichment_queue
from bank_pipeline.enrich._db import chunks, insert_ignore


@dataclass(frozen=True)
class QueuePolicy:
    """When queued transactions go to the model.

    batch: distinct descriptions per model call; a call is made as soon as this many are queued.
    delay: the longest a description the offline tiers were unsure of (provisional confidence below
    `unsure_below`, e.g. "unknown") waits for its batch to fill; then the queue is sent anyway.
    max_delay: the longest any queued description waits (a confident provisional answer is
    already useful, so it may wait longer for a full batch).
    batch_api_min: send through the Message Batches API (half price, answer within a day) when at
    least this many descriptions go at once; 0 = never (the user has not allowed the delay).
    """

    batch: int = 25
    delay: timedelta = timedelta(days=1)
    batch_api_min: int = 0
    unsure_below: float = 0.5
    max_delay: timedelta = timedelta(days=90)

    @classmethod
    def from_settings(cls, settings) -> QueuePolicy:
        return cls.of(
            settings.enrich_queue_batch,
            settings.enrich_queue_delay_hours,
            settings.enrich_queue_max_delay_hours,
            settings.enrich_batch_api_min,
        )

    @classmethod
    def of(cls, batch: int, delay_hours: float, max_delay_hours: float, batch_api_min: int) -> QueuePolicy:
        return cls(
            batch=max(1, batch),
            delay=timedelta(hours=delay_hours),
            batch_api_min=max(0, batch_api_min),
            max_delay=timedelta(hours=max(max_delay_hours, delay_hours)),
        )


@dataclass(frozen=True)
class Queued:
    transaction_id: int
    cache_key: str | None
    queued_at: datetime
    batch_id: str | None


def enqueue(conn: Connection, items: Iterable[tuple[int, str | None]], now: datetime) -> None:
    """Queue (transaction id, cache key) pairs; one already queued keeps its first time."""
    rows = [{"transaction_id": i, "cache_key": k, "queued_at": now} for i, k in items]
    for part in chunks(rows):
        insert_ignore(conn, enrichment_queue, part, ["transaction_id"])


def load(conn: Connection) -> list[Queued]:
    q = enrichment_queue.c
    rows = conn.execute(
        select(q.transaction_id, q.cache_key, q.queued_at, q.batch_id).order_by(q.queued_at, q.transaction_id)
    )
    return [Queued(r.transaction_id, r.cache_key, _aware(r.queued_at), r.batch_id) for r in rows]


def remove(conn: Connection, ids: Iterable[int]) -> None:
    for part in chunks(sorted(set(ids))):
        conn.execute(delete(enrichment_queue).where(enrichment_queue.c.transaction_id.in_(part)))


def mark_submitted(conn: Connection, ids: Iterable[int], batch_id: str | None, now: datetime | None) -> None:
    """Record the Message Batch carrying these items (None: back to the plain queue)."""
    for part in chunks(sorted(set(ids))):
        conn.execute(
            update(enrichment_queue)
            .where(enrichment_queue.c.transaction_id.in_(part))
            .values(batch_id=batch_id, submitted_at=now)
        )


def counts(conn: Connection) -> dict[str, int]:
    """Queued transactions, and those of them inside a submitted Message Batch."""
    q = enrichment_queue.c
    total = submitted = 0
    for row in conn.execute(select(q.batch_id)):
        total += 1
        submitted += row.batch_id is not None
    return {"queued": total, "in_message_batches": submitted}


def due(groups: list[tuple[datetime, bool]], policy: QueuePolicy, now: datetime) -> list[int]:
    """Which of these groups (oldest first: (queued at, unsure)) to send now, by index.

    Whole batches, oldest first; when an unsure one has waited `delay`, those too, with the batch
    they start filled up from the oldest others; everything once the oldest has waited `max_delay`.
    """
    if not groups:
        return []
    if groups[0][0] <= now - policy.max_delay:
        return list(range(len(groups)))
    late = [i for i, (at, unsure) in enumerate(groups) if unsure and at <= now - policy.delay]
    size = len(groups) // policy.batch * policy.batch
    if late:
        size = max(size, -(-len(late) // policy.batch) * policy.batch)
    chosen = late + [i for i in range(len(groups)) if i not in set(late)]
    return sorted(chosen[: min(size, len(groups))])


def _aware(value: datetime) -> datetime:
    from datetime import timezone

    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
