"""The model queue: new descriptions wait here, answered provisionally by the offline tiers, until
a full batch has gathered or the oldest has waited long enough.

A daily run sees a handful of new descriptions; calling the model for each handful pays the
instructions (the prompt prefix) every day for a few answers. Queued, the same descriptions share
calls whatever the run shape: the queue goes when `batch` of them are waiting, and then all of
them go together, in calls of up to the model's batch size (BANK_PIPELINE_ENRICH_BATCH_SIZE, 50:
at least twice `batch` less one, so every call of a full send carries at least `batch` on average,
where calls capped at `batch` would leave a remainder for a call of its own). The provisional
answers are shown meanwhile and replaced when the model answers (never over an override:
`service._write` guards that).

Cost: every call carries at least `batch` descriptions on average, whatever the run shape. A send
smaller than a batch is a call that costs more than its share, so a confident answer's longest
wait (`max_delay`) is honoured only when earlier calls carried enough spare descriptions to pay
for it (ledger.spare_descriptions); otherwise it waits for its batch. An unsure answer's `delay`
is always honoured: an "unknown" is worth a call of its own after a day.
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

    batch: distinct descriptions that make the queue go: as soon as this many are queued, the model
    is called with everything queued (a call carries up to the model's batch size).
    delay: the longest a description the offline tiers were unsure of (provisional confidence below
    `unsure_below`, e.g. "unknown") waits for its batch to fill; then the queue is sent anyway.
    max_delay: the longest a confident provisional answer waits for its batch, when the calls so
    far can pay for a smaller one (it is already useful, so it may wait longer).
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


def due(groups: list[tuple[datetime, bool]], policy: QueuePolicy, now: datetime, *, spare: int) -> bool:
    """Whether the queue (groups of one description: (queued at, unsure)) goes to the model now.

    It goes whole (what is queued rides along in the same calls instead of waiting to make a call
    of its own): when `batch` are waiting; when an unsure one has waited `delay`; when the oldest
    has waited `max_delay` and `spare` (descriptions earlier calls carried beyond a batch each)
    pays for a call this short of a batch.
    """
    if not groups:
        return False
    return (
        len(groups) >= policy.batch
        or any(unsure and at <= now - policy.delay for at, unsure in groups)
        or (min(at for at, _ in groups) <= now - policy.max_delay and spare + len(groups) >= policy.batch)
    )


def _aware(value: datetime) -> datetime:
    from datetime import timezone

    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
