"""`enrich_account_days`: run the tiers over a set of account-days, cheapest first.

overrides (the user's word, never overwritten) → rules → cache → model. Everything a run
touches is gathered first, so model batches span all of the run's partitions, and each distinct
normalised description is asked about once per run (the rest are served from the cache entry
that answer writes).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Protocol

from sqlalchemy import Engine, and_, select

from bank_pipeline.categories import Category
from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import category_overrides, enrichments, transactions
from bank_pipeline.enrich import cache as cache_store
from bank_pipeline.enrich._db import chunks, upsert
from bank_pipeline.enrich.ledger import Ledger
from bank_pipeline.enrich.normalise import cache_key, clean_text, normalise_description
from bank_pipeline.enrich.payment import detect_payment_method
from bank_pipeline.enrich.policy import enforce_direction
from bank_pipeline.enrich.rules import load_rules, match_rule
from bank_pipeline.enrich.types import SOURCES, Enrichment, TxnInput

log = logging.getLogger(__name__)
CHUNK = 20000  # transactions per pass: bounds memory; misses of a pass share model batches


class Model(Protocol):
    provider: str
    name: str
    categories: dict[str, Category]

    def enrich(self, items: list[TxnInput], *, ledger: Ledger | None = None) -> dict[int, Enrichment]: ...


@dataclass
class EnrichStats:
    transactions: int = 0  # booked transactions in the requested account-days
    enriched: int = 0  # enrichments written by this run
    skipped: int = 0  # already enriched (force=False) or already carrying their override
    by_source: Counter = field(default_factory=Counter)
    model_calls: int = 0
    model_attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    fallbacks: int = 0  # model answers replaced by the offline model (recorded as provider offline)
    coerced: int = 0  # labels changed because their category cannot label that direction

    def as_metadata(self) -> dict[str, int | float]:
        out: dict[str, int | float] = {
            "transactions": self.transactions,
            "enriched": self.enriched,
            "skipped": self.skipped,
        }
        out.update({f"source_{s}": self.by_source.get(s, 0) for s in SOURCES})
        out.update(
            model_calls=self.model_calls,
            model_attempts=self.model_attempts,
            tokens_in=self.input_tokens,
            tokens_out=self.output_tokens,
            tokens_cache_read=self.cache_read_tokens,
            tokens_cache_write=self.cache_write_tokens,
            cost_usd=float(self.cost_usd),
            fallbacks=self.fallbacks,
            coerced=self.coerced,
        )
        return out


def _load(engine: Engine, account_days: dict[int, list[date]]) -> list[dict]:
    t, e, o = transactions, enrichments, category_overrides
    query = (
        select(
            t.c.id,
            t.c.description,
            t.c.amount,
            t.c.direction,
            t.c.merchant_name,
            t.c.transaction_category,
            t.c.transaction_classification,
            e.c.source.label("enrichment_source"),
            o.c.transaction_id.label("override_id"),
        )
        .select_from(t.outerjoin(e, e.c.transaction_id == t.c.id).outerjoin(o, o.c.transaction_id == t.c.id))
        .order_by(t.c.id)
    )
    rows: list[dict] = []
    with engine.connect() as conn:
        for account_id, days in account_days.items():
            for part in chunks(sorted(set(days))):
                cond = and_(t.c.account_id == account_id, t.c.booking_date.in_(part))
                rows.extend(dict(r) for r in conn.execute(query.where(cond)).mappings())
    return rows


def _txn(row: dict) -> TxnInput:
    classification = row["transaction_classification"] or ()
    if isinstance(classification, str):
        classification = (classification,)
    return TxnInput(
        id=row["id"],
        description=row["description"] or "",
        amount=row["amount"],
        direction=row["direction"],
        merchant_name=row["merchant_name"],
        transaction_category=row["transaction_category"],
        transaction_classification=tuple(str(c) for c in classification),
    )


def _row(txn_id: int, e: Enrichment, key: str | None, run_id: str | None) -> dict:
    return {
        "transaction_id": txn_id,
        **e.fields(),
        "source": e.source,
        "provider": e.provider,
        "model": e.model,
        "cache_key": key,
        "flags": ",".join(e.flags)[:256] or None,
        "run_id": run_id,
        "updated_at": utcnow(),
    }


def _write(engine: Engine, rows: list[dict]) -> int:
    """Upsert enrichments, never over a transaction that has an override (checked in the same
    transaction as the write, so a concurrent `categorize` wins)."""
    written = 0
    for part in chunks(rows):
        with engine.begin() as conn:
            ids = [r["transaction_id"] for r in part if r["source"] != "override"]
            protected = set(
                conn.execute(
                    select(category_overrides.c.transaction_id).where(
                        category_overrides.c.transaction_id.in_(ids)
                    )
                ).scalars()
            )
            keep = [r for r in part if r["source"] == "override" or r["transaction_id"] not in protected]
            upsert(conn, enrichments, keep, ["transaction_id"])
            written += len(keep)
    return written


def _apply_overrides(engine: Engine, ids: list[int], run_id: str | None, stats: EnrichStats) -> None:
    rows = []
    with engine.connect() as conn:
        for part in chunks(ids):
            for o in conn.execute(
                select(category_overrides).where(category_overrides.c.transaction_id.in_(part))
            ).mappings():
                e = Enrichment(
                    **{
                        k: o[k] for k in ("category", "subcategory", "merchant", "merchant_type", "essential")
                    },
                    payment_method=o["payment_method"],
                    confidence=o["confidence"] if o["confidence"] is not None else 1.0,
                    source="override",
                    provider="user",
                )
                rows.append(_row(o["transaction_id"], e, None, run_id))
    stats.by_source["override"] += len(rows)
    stats.enriched += _write(engine, rows)


def enrich_account_days(
    engine: Engine,
    account_days: dict[int, list[date]],
    model: Model,
    *,
    run_id: str | None,
    force: bool = False,
) -> EnrichStats:
    """Enrich the booked transactions of these accounts' days that have no enrichment yet (all of
    them with `force`, except those with an override: the user's word is final)."""
    categories = model.categories
    stats = EnrichStats()
    ledger = Ledger(engine, run_id)
    rows = _load(engine, account_days)
    stats.transactions = len(rows)
    stale_overrides = [
        r["id"] for r in rows if r["override_id"] is not None and r["enrichment_source"] != "override"
    ]
    targets = [r for r in rows if r["override_id"] is None and (force or r["enrichment_source"] is None)]
    stats.skipped = len(rows) - len(targets) - len(stale_overrides)
    if stale_overrides:
        _apply_overrides(engine, stale_overrides, run_id, stats)
    with engine.connect() as conn:
        rules = load_rules(conn)
    for part in chunks(targets, CHUNK):
        _enrich_chunk(engine, [_txn(r) for r in part], model, rules, categories, ledger, run_id, stats)
    t = ledger.totals
    stats.model_calls, stats.model_attempts = t.calls, t.attempts
    stats.input_tokens, stats.output_tokens = t.input_tokens, t.output_tokens
    stats.cache_read_tokens, stats.cache_write_tokens = (
        t.cache_read_input_tokens,
        t.cache_creation_input_tokens,
    )
    stats.cost_usd = t.cost_usd
    log.info("enrichment run %s: %s", run_id, stats.as_metadata())
    return stats


def _enrich_chunk(
    engine, txns: list[TxnInput], model: Model, rules, categories, ledger, run_id, stats
) -> None:
    answers: dict[int, Enrichment] = {}
    keys: dict[int, str | None] = {}
    pending: list[TxnInput] = []
    for txn in txns:
        keys[txn.id] = cache_key(txn.description, txn.direction)
        rule = match_rule(
            rules, normalise_description(txn.description), clean_text(txn.description), txn.direction
        )
        if rule:
            answers[txn.id] = rule.enrichment
        else:
            pending.append(txn)

    with engine.connect() as conn:
        found = cache_store.lookup(conn, [k for t in pending if (k := keys[t.id])])
    hits: Counter = Counter()
    misses: list[TxnInput] = []
    for txn in pending:
        entry = found.get(keys[txn.id] or "")
        if entry and entry.usable_by(model.provider, model.name, categories):
            answers[txn.id] = entry.enrichment
            hits[entry.key] += 1
        else:
            misses.append(txn)

    # One question per distinct key; its answer serves the rest of the group as a cache hit.
    groups: dict[str, list[TxnInput]] = defaultdict(list)
    ask: list[TxnInput] = []
    for txn in misses:
        key = keys[txn.id]
        if key is None:
            ask.append(txn)
            continue
        if not groups[key]:
            ask.append(txn)
        groups[key].append(txn)
    fresh: dict[str, Enrichment] = {}
    if ask:
        answered = model.enrich(ask, ledger=ledger)
        for txn in ask:
            answer = answered.get(txn.id)
            if answer is None:  # a model must answer every id; make the gap visible, not silent
                log.error("model %s returned no answer for transaction %s", model.name, txn.id)
                answer = Enrichment("unknown", source="model", provider=model.provider, model=model.name)
            answers[txn.id] = answer
            key = keys[txn.id]
            if key is not None:
                fresh[key] = enforce_direction(answer, txn.direction, categories)
                for other in groups[key][1:]:
                    answers[other.id] = fresh[key].with_(source="cache")
                    hits[key] += 1

    out = []
    for txn in txns:
        e = answers[txn.id]
        if e.payment_method is None:
            e = e.with_(payment_method=detect_payment_method(txn.description, txn.transaction_category))
        e = enforce_direction(e, txn.direction, categories)
        stats.by_source[e.source] += 1
        stats.coerced += any(f.startswith("direction_coerced") for f in e.flags)
        stats.fallbacks += any(f.startswith("fallback:") for f in e.flags)
        out.append(_row(txn.id, e, keys[txn.id], run_id))
    with engine.begin() as conn:
        cache_store.store(conn, fresh)
        cache_store.record_hits(conn, hits)
    stats.enriched += _write(engine, out)


def account_days_between(
    engine: Engine, date_from: date, date_to: date, account_keys: Iterable[str] | None = None
):
    """{account id: [days]} for a date range (the CLI's `enrich --from --to`)."""
    from datetime import timedelta

    from bank_pipeline.db.schema import accounts

    query = select(accounts.c.id, accounts.c.account_key)
    keys = list(account_keys or [])
    if keys:
        query = query.where(accounts.c.account_key.in_(keys))
    with engine.connect() as conn:
        found = {r.account_key: r.id for r in conn.execute(query)}
    missing = [k for k in keys if k not in found]
    if missing:
        from bank_pipeline.errors import BankPipelineError

        raise BankPipelineError(f"unknown account key(s): {', '.join(missing)}")
    days = [date_from + timedelta(days=i) for i in range((date_to - date_from).days + 1)]
    return {account_id: days for account_id in found.values()}
