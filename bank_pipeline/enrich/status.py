"""What enrichment has queued and saved so far, for `bank-pipeline plan` (the asset's metadata
carries the same figures per run: EnrichStats.as_metadata)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import Engine

from bank_pipeline.db.schema import enrichments, llm_calls
from bank_pipeline.enrich import queue as model_queue


@dataclass(frozen=True)
class EnrichmentStatus:
    provisional: int  # enrichments still carrying an offline answer while queued for the model
    queued: int
    in_message_batches: int
    by_cache: int
    by_classifier: int
    saved_usd_cache: Decimal | None  # None: no model price (offline enricher or unknown model)
    saved_usd_classifier: Decimal | None
    saved_usd_batch_api: Decimal  # the Message Batches discount on calls made so far

    def describe(self) -> str:
        def money(value: Decimal | None) -> str:
            return "n/a" if value is None else f"${value:,.4f}"

        return (
            f"Enrichment queue: {self.queued} transaction(s) waiting for the model "
            f"({self.in_message_batches} in Message Batches), {self.provisional} shown with a provisional answer. "
            f"Answered free so far: {self.by_cache} by the cache (saved {money(self.saved_usd_cache)}), "
            f"{self.by_classifier} by the classifier (saved {money(self.saved_usd_classifier)}); "
            f"Message Batches discount {money(self.saved_usd_batch_api)}."
        )


def enrichment_status(engine: Engine, per_call_usd: Decimal | None, batch_size: int) -> EnrichmentStatus:
    """`per_call_usd`: expected cost of one model call of `batch_size` transactions (None: unknown)."""
    with engine.connect() as conn:
        counts = model_queue.counts(conn)
        by_source = dict(
            conn.execute(
                sa.select(enrichments.c.source, sa.func.count()).group_by(enrichments.c.source)
            ).all()
        )
        provisional = conn.execute(
            sa.select(sa.func.count()).where(enrichments.c.flags.like("%provisional%"))
        ).scalar_one()
        # Batch API calls are charged half: the discount equals what they were charged.
        batch_cost = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(llm_calls.c.cost_usd), 0)).where(
                llm_calls.c.provider == "anthropic-batch"
            )
        ).scalar_one()
    per_txn = None if per_call_usd is None else Decimal(per_call_usd) / max(1, batch_size)
    cache, learned = int(by_source.get("cache", 0)), int(by_source.get("classifier", 0))
    return EnrichmentStatus(
        provisional=int(provisional),
        queued=counts["queued"],
        in_message_batches=counts["in_message_batches"],
        by_cache=cache,
        by_classifier=learned,
        saved_usd_cache=None if per_txn is None else per_txn * cache,
        saved_usd_classifier=None if per_txn is None else per_txn * learned,
        saved_usd_batch_api=Decimal(str(batch_cost)),
    )
