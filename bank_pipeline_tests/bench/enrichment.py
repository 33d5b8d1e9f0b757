"""Enrichment over a simulated year of 5 accounts: model calls, cache hits, cost, accuracy.

The simulator's ground truth (`/_sim/ground_truth?user=multi-5`) is loaded straight into
`transactions` (this measures enrichment, not import). The Anthropic model runs against the
local fake Messages API, which answers with the offline model's labels and reports usage from
the request size; cost is at the configured price of claude-haiku-4-5. Three schedules: one
backfill run over the year (the assets use a single-run backfill policy, so batches span every
partition), monthly runs and daily runs (a run can only batch the new descriptions it has).
Targets: ≤ 1 model call per 25 new uncached transactions; ≥ 80% cache + rule hits over the year;
offline accuracy ≥ 85% on the simulator; hand-labelled accuracy reported as measured.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
from sqlalchemy import select

TODAY = date(2026, 11, 20)
MODEL = "claude-haiku-4-5"
# Claude Haiku 4.5 caches prompts of at least 4096 tokens; ours is shorter, so no cache credit.
HAIKU_MIN_CACHE_TOKENS = 4096


def _ground_truth(days: int) -> dict:
    from bank_pipeline.simulator import SimulatorConfig, run_in_thread

    start = TODAY - timedelta(days=days - 1)
    with run_in_thread(SimulatorConfig(seed=7, today=TODAY)) as sim:
        response = httpx.get(
            f"{sim.base_url}/_sim/ground_truth",
            params={"user": "multi-5", "from": start.isoformat(), "to": TODAY.isoformat()},
            timeout=300,
        )
        response.raise_for_status()
        return response.json()


def _load(engine, truth: dict) -> tuple[dict[int, list[date]], dict[int, str]]:
    """Insert every ground-truth transaction; → ({account id: days}, {transaction id: true category})."""
    from bank_pipeline.db import utcnow
    from bank_pipeline.db.schema import transactions
    from bank_pipeline_tests.enrich_support import make_account

    account_days: dict[int, list[date]] = {}
    truth_by_id: dict[int, str] = {}
    for provider_id, acct in truth["accounts"].items():
        account_id = make_account(engine)
        days: set[date] = set()
        rows = []
        for t in acct["transactions"]:
            amount = Decimal(t["amount"])
            day = date.fromisoformat(t["booking_date"])
            days.add(day)
            rows.append(
                {
                    "dedup_key": f"{provider_id}:{t['internal_id']}",
                    "account_id": account_id,
                    "transaction_id": t["transaction_id"],
                    "booking_date": day,
                    "booked_at": datetime.fromisoformat(t["timestamp"]),
                    "amount": amount,
                    "currency": t["currency"],
                    "direction": "credit" if amount > 0 else "debit",
                    "description": t["description"],
                    "merchant_name": t["merchant_name"],
                    "transaction_category": t["transaction_category"],
                    "loaded_at": utcnow(),
                    "_truth": t["true_category"],
                }
            )
        with engine.begin() as conn:
            for row in rows:
                truth_cat = row.pop("_truth")
                new_id = conn.execute(transactions.insert().values(**row)).inserted_primary_key[0]
                truth_by_id[new_id] = truth_cat
        account_days[account_id] = sorted(days)
    return account_days, truth_by_id


def _fresh_db(truth: dict):
    from bank_pipeline.db import make_engine, migrate

    path = Path(tempfile.mkdtemp(prefix="bench-enrich-")) / "app.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    account_days, truth_by_id = _load(engine, truth)
    return engine, account_days, truth_by_id


def _periods(account_days: dict[int, list[date]], period: str) -> list[dict[int, list[date]]]:
    """Split the run into monthly or daily runs, each covering every account's days in it."""
    if period == "backfill":
        return [account_days]
    buckets: dict[tuple, dict[int, list[date]]] = {}
    for account_id, days in account_days.items():
        for day in days:
            key = (day.year, day.month) if period == "month" else (day,)
            buckets.setdefault(key, {}).setdefault(account_id, []).append(day)
    return [buckets[k] for k in sorted(buckets)]


def _anthropic_year(truth: dict, period: str) -> dict:
    from bank_pipeline.enrich import enrich_account_days
    from bank_pipeline.enrich.anthropic_model import AnthropicModel
    from bank_pipeline.enrich.offline import OfflineModel
    from bank_pipeline.enrich.types import TxnInput
    from bank_pipeline_tests.fakes.anthropic_api import FakeAnthropic

    offline = OfflineModel()

    def brain(txn: dict, labels: list[str]) -> dict:
        amount = Decimal(txn["amount"])
        e = offline.classify(
            TxnInput(
                0,
                txn["description"],
                amount,
                txn["direction"],
                txn.get("merchant_name"),
                txn.get("truelayer_category"),
            )
        )
        return {
            "category": e.category if e.category in labels else "unknown",
            "subcategory": e.subcategory,
            "merchant": e.merchant,
            "merchant_type": e.merchant_type,
            "essential": bool(e.essential),
            "payment_method": e.payment_method,
            "confidence": round(e.confidence, 2),
        }

    engine, account_days, _ = _fresh_db(truth)
    sources: Counter = Counter()
    calls = attempts = asked = optimum = 0
    tokens = Counter()
    cost = Decimal(0)
    with FakeAnthropic(answer=brain, min_cache_tokens=HAIKU_MIN_CACHE_TOKENS) as fake:
        model = AnthropicModel(api_key="bench-fake-key", model=MODEL, base_url=fake.base_url, batch_size=40)
        for i, part in enumerate(_periods(account_days, period)):
            before = len(fake.message_requests)
            stats = enrich_account_days(engine, part, model, run_id=f"bench-{period}-{i}")
            new = sum(r["messages"][0]["content"].count('"id":') for r in fake.message_requests[before:])
            optimum += -(-new // model.batch_size)  # fewest calls that can carry this run's new keys
            sources.update(stats.by_source)
            calls += stats.model_calls
            attempts += stats.model_attempts
            cost += stats.cost_usd
            tokens.update(
                input=stats.input_tokens,
                output=stats.output_tokens,
                cache_read=stats.cache_read_tokens,
                cache_write=stats.cache_write_tokens,
            )
        asked = sum(r["messages"][0]["content"].count('"id":') for r in fake.message_requests)
    n = sum(sources.values())
    engine.dispose()
    return {
        "n": n,
        "sources": sources,
        "calls": calls,
        "asked": asked,
        "optimum": optimum,
        "cost": cost,
        "tokens": tokens,
    }


def _offline_accuracy(truth: dict) -> tuple[float, int, Counter, Counter]:
    from bank_pipeline.db.schema import enrichments
    from bank_pipeline.enrich import enrich_account_days
    from bank_pipeline.enrich.offline import OfflineModel

    engine, account_days, truth_by_id = _fresh_db(truth)
    stats = enrich_account_days(engine, account_days, OfflineModel(), run_id="bench-offline")
    with engine.connect() as conn:
        got = dict(conn.execute(select(enrichments.c.transaction_id, enrichments.c.category)).all())
    right = sum(got.get(i) == c for i, c in truth_by_id.items())
    misses = Counter((truth_by_id[i], got.get(i)) for i in truth_by_id if got.get(i) != truth_by_id[i])
    engine.dispose()
    return right / len(truth_by_id), len(truth_by_id), stats.by_source, misses


def run(args) -> None:
    from bank_pipeline_tests.enrich_support import labelled_accuracy

    days = 92 if getattr(args, "quick", False) else 365
    truth = _ground_truth(days)
    n = sum(len(a["transactions"]) for a in truth["accounts"].values())
    print(f"simulated: {len(truth['accounts'])} accounts, {days} days, {n} booked transactions (seed 7)")

    labels = {"backfill": "one backfill run", "month": "monthly runs", "day": "daily runs"}
    for period in ("backfill", "month", "day"):
        r = _anthropic_year(truth, period)
        hits = r["sources"]["cache"] + r["sources"]["rule"]
        per_25 = r["calls"] / r["asked"] * 25 if r["asked"] else 0.0
        print(
            f"anthropic ({MODEL}, batch 40, {labels[period]}): {r['calls']} model calls for {r['n']} transactions = "
            f"{r['calls'] / r['n'] * 1000:.1f} per 1,000; {r['asked']} distinct uncached sent → "
            f"{per_25:.2f} calls per 25 uncached (target ≤ 1; fewest possible for these runs: {r['optimum']} calls)"
        )
        print(
            f"  cache + rule hits {hits}/{r['n']} = {hits / r['n']:.1%} (target ≥ 80%); sources {dict(r['sources'])}"
        )
        t = r["tokens"]
        print(
            f"  tokens in {t['input']} out {t['output']} cache read {t['cache_read']} write {t['cache_write']}; "
            f"cost ${r['cost']:.4f} = ${r['cost'] / r['n'] * 1000:.4f} per 1,000 transactions"
        )

    accuracy, count, sources, misses = _offline_accuracy(truth)
    print(
        f"offline accuracy vs simulator ground truth: {accuracy:.1%} of {count} (target ≥ 85%); sources {dict(sources)}"
    )
    if misses:
        print(
            "  misses (true → offline): " + ", ".join(f"{a}→{b} ×{k}" for (a, b), k in misses.most_common(6))
        )
    category, merchant, rows = labelled_accuracy()
    print(
        f"offline accuracy on the hand-labelled UK set: category {category:.1%}, merchant {merchant:.1%} of {rows} rows "
        "(labels and knowledge base written by the same author: an optimistic figure)"
    )
