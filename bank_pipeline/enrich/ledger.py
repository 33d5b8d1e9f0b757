"""The ledger of model calls (`llm_calls`): what each call cost, how long it took, how it ended.

Written as each call completes (not at the end of a run), so a crash never hides spend.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Connection, Engine, func, select

from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import llm_calls
from bank_pipeline.enrich.pricing import BATCH_DISCOUNT, PriceTable


@dataclass
class CallRecord:
    provider: str
    model: str
    batch_size: int
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    latency_ms: int | None = None
    attempts: int = 1
    outcome: str = "ok"  # ok | partial | error
    error: str | None = None
    batch_api: bool = False  # answered through the Message Batches API: half the list price

    def count_usage(self, usage) -> None:
        """Take the token counts from an Anthropic `usage` (cache fields may be absent or None)."""
        self.input_tokens = usage.input_tokens or 0
        self.output_tokens = usage.output_tokens or 0
        self.cache_creation_input_tokens = getattr(usage, "cache_creation_input_tokens", 0) or 0
        self.cache_read_input_tokens = getattr(usage, "cache_read_input_tokens", 0) or 0


@dataclass
class LedgerTotals:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    attempts: int = 0
    cost_usd: Decimal = Decimal(0)
    batch_api_cost_usd: Decimal = Decimal(0)


class Ledger:
    """Records calls for one run; `engine=None` keeps totals in memory only."""

    def __init__(self, engine: Engine | None, run_id: str | None, prices: PriceTable | None = None):
        self.engine = engine
        self.run_id = run_id
        self.prices = prices or PriceTable.from_env()
        self.totals = LedgerTotals()

    def record(self, call: CallRecord) -> Decimal:
        cost = self.prices.cost(
            call.model,
            call.input_tokens,
            call.output_tokens,
            call.cache_creation_input_tokens,
            call.cache_read_input_tokens,
        )
        if call.batch_api:
            cost = cost * BATCH_DISCOUNT
        t = self.totals
        t.calls += 1
        t.attempts += call.attempts
        t.input_tokens += call.input_tokens
        t.output_tokens += call.output_tokens
        t.cache_creation_input_tokens += call.cache_creation_input_tokens
        t.cache_read_input_tokens += call.cache_read_input_tokens
        t.cost_usd += cost
        if call.batch_api:
            t.batch_api_cost_usd += cost
        if self.engine is not None:
            with self.engine.begin() as conn:
                conn.execute(
                    llm_calls.insert().values(
                        run_id=self.run_id,
                        provider=call.provider,
                        model=call.model,
                        batch_size=call.batch_size,
                        input_tokens=call.input_tokens,
                        output_tokens=call.output_tokens,
                        cache_creation_input_tokens=call.cache_creation_input_tokens,
                        cache_read_input_tokens=call.cache_read_input_tokens,
                        cost_usd=cost.quantize(Decimal("0.00000001")),
                        latency_ms=call.latency_ms,
                        attempts=call.attempts,
                        outcome=call.outcome,
                        error=(call.error or None) and call.error[:2000],
                        created_at=utcnow(),
                    )
                )
        return cost


def spare_descriptions(conn: Connection, model: str, batch: int) -> int:
    """Descriptions this model's calls have carried beyond `batch` a call, over every call recorded
    (negative: fewer). The model queue spends them on calls smaller than a batch (queue.due)."""
    query = select(func.coalesce(func.sum(llm_calls.c.batch_size), 0), func.count())
    carried, calls = conn.execute(query.where(llm_calls.c.model == model)).one()
    return int(carried) - batch * int(calls)
