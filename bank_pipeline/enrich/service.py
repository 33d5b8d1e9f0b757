"""`enrich_account_days`: run the tiers over a set of account-days, cheapest first.

overrides (the user's word, never overwritten) → rules → classifier (the user's own labels,
learned) → cache → model. Everything a run touches is gathered first, so model batches span all
of the run's partitions, and each distinct normalised description is asked about once per run
(the rest are served from the cache entry that answer writes).

With a queue policy (the Anthropic model's default, see queue.py) the run does not wait for the
model: misses are answered at once by the offline model (flagged "provisional") and queued; the
model is called with the whole queue when a batch has gathered or the oldest has waited the
delay, and its answers replace the provisional ones.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

from sqlalchemy import Engine, and_, select

from bank_pipeline.categories import Category
from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import category_overrides, enrichments, transactions
from bank_pipeline.enrich import cache as cache_store
from bank_pipeline.enrich import queue as model_queue
from bank_pipeline.enrich._db import chunks, upsert
from bank_pipeline.enrich.ledger import Ledger, spare_descriptions
from bank_pipeline.enrich.normalise import cache_key, clean_text, normalise_description
from bank_pipeline.enrich.offline import OfflineModel
from bank_pipeline.enrich.payment import detect_payment_method
from bank_pipeline.enrich.policy import enforce_direction
from bank_pipeline.enrich.rules import load_rules, match_rule
from bank_pipeline.enrich.types import SOURCES, Enrichment, TxnInput
from bank_pipeline.formulas import strip_formula

log = logging.getLogger(__name__)
CHUNK = 20000  # transactions per pass: bounds memory; misses of a pass share model batches
# The classifier answers when the offline model's confidence is below this (unknown, "other",
# processor-only matches); merchants, decisive words and kind-of-business words stand.
CLASSIFIER_BELOW = 0.5


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
    provisional: int = 0  # answered by the offline tiers and queued for the model by this run
    replaced: int = 0  # provisional answers replaced by the model's in this run
    queued: int = 0  # transactions still waiting for the model after this run
    in_message_batches: int = 0  # of those, submitted in a Message Batch not yet ended
    message_batches: int = 0  # Message Batches submitted by this run
    immediate_calls: int = 0  # calls the run would have made without the queue (one per batch of misses)
    cache_answers: int = 0  # provisional answers replaced from the cache (not in by_source)
    batch_api_cost: Decimal = Decimal(0)  # charged for Message Batches (already half price)
    saved_usd_cache: Decimal = Decimal(0)
    saved_usd_classifier: Decimal = Decimal(0)
    saved_usd_batching: Decimal = Decimal(0)

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
            provisional=self.provisional,
            provisional_replaced=self.replaced,
            queued=self.queued,
            queued_in_message_batches=self.in_message_batches,
            message_batches=self.message_batches,
            saved_usd_cache=float(self.saved_usd_cache),
            saved_usd_classifier=float(self.saved_usd_classifier),
            saved_usd_batching=float(self.saved_usd_batching),
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
        # A derived merchant name never starts like a spreadsheet formula (bank text can).
        "merchant": strip_formula(e.merchant),
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
    learn: bool = True,
) -> EnrichStats:
    """Enrich the booked transactions of these accounts' days that have no enrichment yet (all of
    them with `force`, except those with an override: the user's word is final). `learn=False`
    skips the classifier tier (benchmarks compare with and without it)."""
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
    policy = getattr(model, "queue", None)
    classifier = _classifier(engine, categories) if learn and targets else None
    for part in chunks(targets, CHUNK):
        _enrich_chunk(
            engine,
            [_txn(r) for r in part],
            model,
            rules,
            categories,
            ledger,
            run_id,
            stats,
            policy,
            classifier,
        )
    if policy is not None:
        _flush_queue(engine, model, policy, rules, categories, ledger, run_id, stats)
        with engine.connect() as conn:
            c = model_queue.counts(conn)
        stats.queued, stats.in_message_batches = c["queued"], c["in_message_batches"]
    t = ledger.totals
    stats.model_calls, stats.model_attempts = t.calls, t.attempts
    stats.input_tokens, stats.output_tokens = t.input_tokens, t.output_tokens
    stats.cache_read_tokens, stats.cache_write_tokens = (
        t.cache_read_input_tokens,
        t.cache_creation_input_tokens,
    )
    stats.cost_usd = t.cost_usd
    stats.batch_api_cost = t.batch_api_cost_usd
    _savings(model, stats)
    log.debug("enrichment run %s: %s", run_id, stats.as_metadata())
    return stats


def _enrich_chunk(
    engine, txns: list[TxnInput], model: Model, rules, categories, ledger, run_id, stats, policy, classifier
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
    if classifier is not None and pending:
        # The classifier speaks where the knowledge base is unsure (it learned the user's labels
        # for payees the knowledge base does not know; a known payee the user relabels is a rule).
        offline = _offline(categories, model)
        base = {t.id: offline.classify(t) for t in pending}
        unsure = [t for t in pending if base[t.id].confidence < CLASSIFIER_BELOW]
        learned = classifier.predict_many(unsure)
        for txn_id, answer in learned.items():
            # The label is the user's; the merchant name and how it was paid, the offline model's.
            b = base[txn_id]
            answers[txn_id] = answer.with_(
                merchant=b.merchant, merchant_type=b.merchant_type, payment_method=b.payment_method
            )
        pending = [t for t in pending if t.id not in learned]

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
    stats.immediate_calls += -(-len(ask) // max(1, getattr(model, "batch_size", len(ask) or 1)))
    if ask and policy is not None:
        # Answer now from the offline tiers, provisionally; the model answers when its batch goes.
        offline = _offline(categories, model)
        for txn in misses:
            answers[txn.id] = offline.classify(txn).with_(flags=("provisional",))
        with engine.begin() as conn:
            model_queue.enqueue(conn, [(t.id, keys[t.id]) for t in misses], utcnow())
        stats.provisional += len(misses)
        ask = []
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


_OFFLINE: dict[int, OfflineModel] = {}


def _offline(categories, model=None) -> OfflineModel:
    """The provisional answerer: the run's model when it is offline, else one per taxonomy (the
    knowledge base is loaded once)."""
    if isinstance(model, OfflineModel):
        return model
    model = _OFFLINE.get(id(categories))
    if model is None or model.categories is not categories:
        model = _OFFLINE[id(categories)] = OfflineModel(categories)
    return model


def _classifier(engine: Engine, categories):
    """The user's learned classifier, retrained on their current labels (None: too few yet)."""
    from bank_pipeline.enrich.classifier import train_for

    return train_for(engine, categories)


def _savings(model: Model, stats: EnrichStats) -> None:
    """What the free tiers and batching saved against asking the model, at typical call sizes."""
    if model.provider == "offline":
        return
    from bank_pipeline.enrich.pricing import (
        TYPICAL_PREFIX_TOKENS,
        PriceTable,
        estimate_call_cost,
    )

    prices = PriceTable.from_env()
    size = max(1, getattr(model, "batch_size", 25))
    per_txn = estimate_call_cost(model.name, size, prices) / size
    stats.saved_usd_cache = per_txn * (stats.by_source.get("cache", 0) + stats.cache_answers)
    stats.saved_usd_classifier = per_txn * stats.by_source.get("classifier", 0)
    prefix = prices.cost(model.name, TYPICAL_PREFIX_TOKENS, 0, 0, 0)
    # Calls avoided by queueing (can be negative in the run that sends a queue filled earlier),
    # plus the Message Batches discount (equal to what those calls were charged).
    stats.saved_usd_batching = prefix * (stats.immediate_calls - stats.model_calls) + stats.batch_api_cost


def _group_key(txn_id: int, key: str | None) -> str:
    return key if key is not None else f"#{txn_id}"


def _flush_queue(
    engine: Engine, model: Model, policy: model_queue.QueuePolicy, rules, categories, ledger, run_id, stats
) -> None:
    """Send what is due from the queue (see queue.py) and replace provisional answers."""
    now = utcnow()
    with engine.connect() as conn:
        queued = model_queue.load(conn)
        if not queued:
            return
        ids = [q.transaction_id for q in queued]
        txns: dict[int, TxnInput] = {}
        confidence: dict[int, float] = {}
        overridden: set[int] = set()
        for part in chunks(ids):
            for row in conn.execute(
                select(
                    transactions.c.id,
                    transactions.c.description,
                    transactions.c.amount,
                    transactions.c.direction,
                    transactions.c.merchant_name,
                    transactions.c.transaction_category,
                    transactions.c.transaction_classification,
                    category_overrides.c.transaction_id.label("override_id"),
                    enrichments.c.confidence.label("provisional_confidence"),
                )
                .select_from(
                    transactions.outerjoin(
                        category_overrides, category_overrides.c.transaction_id == transactions.c.id
                    ).outerjoin(enrichments, enrichments.c.transaction_id == transactions.c.id)
                )
                .where(transactions.c.id.in_(part))
            ).mappings():
                txns[row["id"]] = _txn(dict(row))
                confidence[row["id"]] = row["provisional_confidence"] or 0.0
                if row["override_id"] is not None:
                    overridden.add(row["id"])
    gone = overridden | {i for i in ids if i not in txns}
    if gone:
        with engine.begin() as conn:
            model_queue.remove(conn, gone)
    queued = [q for q in queued if q.transaction_id not in gone]

    # Message Batches in flight: collect those that have ended.
    in_flight: dict[str, list[model_queue.Queued]] = defaultdict(list)
    for q in queued:
        if q.batch_id:
            in_flight[q.batch_id].append(q)
    for batch_id, items in in_flight.items():
        members = [txns[q.transaction_id] for q in items]
        answered = model.collect_batch(batch_id, members, ledger)
        if answered is None:
            continue
        groups: dict[str, list[TxnInput]] = defaultdict(list)
        for q in items:
            groups[_group_key(q.transaction_id, q.cache_key)].append(txns[q.transaction_id])
        done = _apply_model_answers(engine, groups, answered, model, categories, run_id, stats)
        with engine.begin() as conn:
            model_queue.remove(conn, done)
            model_queue.mark_submitted(
                conn, [t.id for g in groups.values() for t in g if t.id not in done], None, None
            )

    waiting = [q for q in queued if not q.batch_id]
    # A rule or cache entry written since they were queued answers them for free.
    free_rows, free_ids = [], []
    keys = [q.cache_key for q in waiting if q.cache_key]
    with engine.connect() as conn:
        found = cache_store.lookup(conn, keys) if keys else {}
    still: list[model_queue.Queued] = []
    for q in waiting:
        txn = txns[q.transaction_id]
        rule = match_rule(
            rules, normalise_description(txn.description), clean_text(txn.description), txn.direction
        )
        entry = found.get(q.cache_key or "")
        if rule:
            answer = rule.enrichment
        elif entry and entry.usable_by(model.provider, model.name, categories):
            answer = entry.enrichment
        else:
            still.append(q)
            continue
        answer = _complete(answer, txn, categories)
        stats.cache_answers += answer.source == "cache"
        free_rows.append(_row(txn.id, answer, q.cache_key, run_id))
        free_ids.append(txn.id)
    if free_rows:
        stats.replaced += _write(engine, free_rows)
        with engine.begin() as conn:
            model_queue.remove(conn, free_ids)

    groups = defaultdict(list)
    first: dict[str, datetime] = {}
    unsure: dict[str, bool] = defaultdict(bool)
    for q in still:
        key = _group_key(q.transaction_id, q.cache_key)
        groups[key].append(txns[q.transaction_id])
        first.setdefault(key, q.queued_at)
        unsure[key] |= confidence.get(q.transaction_id, 0.0) < policy.unsure_below
    order = sorted(groups, key=lambda k: (first[k], k))
    with engine.connect() as conn:
        spare = spare_descriptions(conn, model.name, policy.batch)
    if not model_queue.due([(first[k], unsure[k]) for k in order], policy, now, spare=spare):
        return
    chosen = {k: groups[k] for k in order}  # all of it: see queue.py
    reps = [members[0] for members in chosen.values()]
    if policy.batch_api_min and len(reps) >= policy.batch_api_min and hasattr(model, "submit_batch"):
        batch_id = model.submit_batch(reps)
        stats.message_batches += 1
        with engine.begin() as conn:
            model_queue.mark_submitted(conn, [t.id for g in chosen.values() for t in g], batch_id, now)
        return
    answered = model.enrich(reps, ledger=ledger)
    done = _apply_model_answers(engine, chosen, answered, model, categories, run_id, stats)
    with engine.begin() as conn:
        model_queue.remove(conn, done)


def _complete(answer: Enrichment, txn: TxnInput, categories) -> Enrichment:
    if answer.payment_method is None:
        answer = answer.with_(payment_method=detect_payment_method(txn.description, txn.transaction_category))
    return enforce_direction(answer, txn.direction, categories)


def _apply_model_answers(
    engine,
    groups: dict[str, list[TxnInput]],
    answered: dict[int, Enrichment],
    model,
    categories,
    run_id,
    stats,
) -> set[int]:
    """Write the model's answer over every member's provisional one (never over an override);
    → the ids answered. A group whose answer is missing stays queued."""
    rows, fresh, done = [], {}, set()
    for key, members in groups.items():
        answer = next((answered[t.id] for t in members if t.id in answered), None)
        if answer is None:
            continue
        for n, txn in enumerate(members):
            e = _complete(answer if n == 0 else answer.with_(source="cache"), txn, categories)
            stats.cache_answers += n > 0
            stats.fallbacks += any(f.startswith("fallback:") for f in e.flags)
            rows.append(_row(txn.id, e, None if key.startswith("#") else key, run_id))
            done.add(txn.id)
        if not key.startswith("#"):
            fresh[key] = enforce_direction(answer, members[0].direction, categories)
    with engine.begin() as conn:
        cache_store.store(conn, fresh)
    stats.replaced += _write(engine, rows)
    return done


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


# Labels a correction may move: not the user's (override, rule), not a transfer leg's.
RECLASSIFIABLE = ("classifier", "cache", "model", "provider")


def reclassify(engine: Engine, categories: dict[str, Category], *, run_id: str | None = None) -> list[int]:
    """After a correction, at once: the ledger rows for which the classifier, retrained on the
    user's labels now, is the deciding tier (no override, no rule, no transfer, the knowledge
    base unsure — as in an enrichment run) and answers differently from their current label are
    relabelled. Returns their ids."""
    classifier = _classifier(engine, categories)
    if classifier is None:
        return []
    t, e = transactions.c, enrichments.c
    with engine.connect() as conn:
        rows = [
            dict(r)
            for r in conn.execute(
                select(t.id, t.description, t.amount, t.direction, t.merchant_name, t.transaction_category,
                       t.transaction_classification, e.category, e.subcategory)
                .select_from(transactions.join(enrichments, e.transaction_id == t.id))
                .where(e.source.in_(RECLASSIFIABLE), t.id.not_in(select(category_overrides.c.transaction_id)))
            ).mappings()
        ]
        rules = load_rules(conn)
    current = {r["id"]: (r["category"], r["subcategory"]) for r in rows}
    txns = [
        _txn(r) for r in rows
        if not match_rule(rules, normalise_description(r["description"] or ""), clean_text(r["description"] or ""),
                          r["direction"])
    ]
    offline = _offline(categories)
    base = {txn.id: offline.classify(txn) for txn in txns}
    unsure = [txn for txn in txns if base[txn.id].confidence < CLASSIFIER_BELOW]
    by_id = {txn.id: txn for txn in unsure}
    out = []
    for txn_id, answer in classifier.predict_many(unsure).items():
        b = base[txn_id]
        label = enforce_direction(
            answer.with_(merchant=b.merchant, merchant_type=b.merchant_type, payment_method=b.payment_method),
            by_id[txn_id].direction, categories,
        )
        if (label.category, label.subcategory) != current[txn_id]:
            out.append(_row(txn_id, label, cache_key(by_id[txn_id].description, by_id[txn_id].direction), run_id))
    _write(engine, out)
    return [r["transaction_id"] for r in out]
