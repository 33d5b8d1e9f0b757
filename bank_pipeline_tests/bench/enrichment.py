"""Enrichment: accuracy on labelled sets, learning from corrections, model calls in every run shape.

The simulator's ground truth (`/_sim/ground_truth?user=multi-5`) is loaded straight into
`transactions` (this measures enrichment, not import). The Anthropic model runs against the
local fake Messages API, which answers with the offline model's labels and reports usage from
the request size; cost is at the configured price of claude-haiku-4-5. Three schedules: one
backfill run over the year (the assets use a single-run backfill policy, so batches span every
partition), monthly runs and daily runs (a run can only batch the new descriptions it has).
The model is queued (enrich/queue.py: it goes when 25 are queued, delay 1 day by default, and a
call carries up to 50, the default BANK_PIPELINE_ENRICH_BATCH_SIZE): the clock is pinned to each
run's time (06:00 UTC the day after the run's last day), so the delay passes as it would.
Targets: ≤ 1 model call per 25 new uncached transactions in every shape; ≥ 80% cache + rule hits
over the year; offline accuracy ≥ 85% on the simulator; labelled sets reported as measured, the
independent one (data/eval_independent.csv, written apart from the knowledge base) included when
present. The learning curve: a simulated user corrects a share of a year's transactions
(`categorize`, which also learns rules); accuracy on the rest, rules only vs rules + classifier.
"""

from __future__ import annotations

import csv
import os
import random
import tempfile
from collections import Counter
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
from sqlalchemy import select

TODAY = date(2026, 11, 20)
MODEL = "claude-haiku-4-5"
# Claude Haiku 4.5 caches prompts of at least 4096 tokens; ours is shorter, so no cache credit.
HAIKU_MIN_CACHE_TOKENS = 4096
DATA = Path(__file__).resolve().parent.parent / "data"
UK_SET = DATA / "uk_descriptions_labelled.csv"
DEV_SET = DATA / "dev_international_examples.csv"
INDEPENDENT_SET = DATA / "eval_independent.csv"
CURVE = (0.0, 0.01, 0.02, 0.05)
CALL_CAP = 50  # the default BANK_PIPELINE_ENRICH_BATCH_SIZE: descriptions a model call may carry


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


def _brain():
    from bank_pipeline.enrich.offline import OfflineModel
    from bank_pipeline.enrich.types import TxnInput

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

    return brain


def _run_time(part: dict[int, list[date]]) -> datetime:
    """When the schedule runs for these days: 06:00 UTC the day after the last of them."""
    last = max(day for days in part.values() for day in days)
    return datetime.combine(last + timedelta(days=1), time(6), timezone.utc)


def _ids_sent(requests: list[dict]) -> set[str]:
    import json

    ids: set[str] = set()
    for r in requests:
        text = r["messages"][0]["content"]
        ids.update(t["id"] for t in json.loads(text[text.index("{") :])["transactions"])
    return ids


def _anthropic_year(truth: dict, period: str, policy, *, collect_after: bool = True) -> dict:
    from sqlalchemy import func, select

    from bank_pipeline import clock
    from bank_pipeline.db.schema import enrichments
    from bank_pipeline.enrich import enrich_account_days
    from bank_pipeline.enrich.anthropic_model import AnthropicModel
    from bank_pipeline_tests.fakes.anthropic_api import FakeAnthropic, _tokens

    engine, account_days, _ = _fresh_db(truth)
    sources: Counter = Counter()
    calls = 0
    tokens = Counter()
    cost = Decimal(0)
    saved = Counter()
    provisional = replaced = queued = 0
    saved_env = os.environ.get(clock.OFFSET_ENV)
    try:
        with FakeAnthropic(answer=_brain(), min_cache_tokens=HAIKU_MIN_CACHE_TOKENS) as fake:
            model = AnthropicModel(
                api_key="bench-fake-key",
                model=MODEL,
                base_url=fake.base_url,
                batch_size=CALL_CAP,
                queue=policy,
            )
            parts = _periods(account_days, period)
            runs = [(f"bench-{period}-{i}", part, _run_time(part)) for i, part in enumerate(parts)]
            if collect_after:  # the next scheduled run (no new transactions) sends/collects what is due
                runs.append((f"bench-{period}-next", {}, runs[-1][2] + timedelta(days=1)))
            for run_id, part, at in runs:
                clock.pin(at)
                stats = enrich_account_days(engine, part, model, run_id=run_id)
                sources.update(stats.by_source)
                calls += stats.model_calls
                cost += stats.cost_usd
                provisional += stats.provisional
                replaced += stats.replaced
                queued = stats.queued
                saved.update(
                    cache=stats.saved_usd_cache,
                    classifier=stats.saved_usd_classifier,
                    batching=stats.saved_usd_batching,
                )
                tokens.update(
                    input=stats.input_tokens,
                    output=stats.output_tokens,
                    cache_read=stats.cache_read_tokens,
                    cache_write=stats.cache_write_tokens,
                )
            asked = len(_ids_sent(fake.message_requests))
            with engine.connect() as conn:
                final = Counter(
                    dict(
                        conn.execute(
                            select(enrichments.c.source, func.count()).group_by(enrichments.c.source)
                        ).all()
                    )
                )
            prefix_tokens = _tokens(model.system) + _tokens(model.tools)
            batches = len(fake.batches)
    finally:
        if saved_env is None:
            os.environ.pop(clock.OFFSET_ENV, None)
        else:
            os.environ[clock.OFFSET_ENV] = saved_env
    n = sum(sources.values())  # each transaction's first answer (provisional ones included)
    engine.dispose()
    return {
        "n": n,
        "sources": final,
        "first_sources": sources,
        "calls": calls,
        "asked": asked,
        "cost": cost,
        "tokens": tokens,
        "saved": saved,
        "provisional": provisional,
        "replaced": replaced,
        "queued": queued,
        "prefix_tokens": prefix_tokens,
        "message_batches": batches,
        "runs": len(runs),
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


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:g} day(s)" if hours >= 24 else f"{hours:g} h"


def _read_labelled(path: Path) -> list[dict]:
    """A labelled CSV → rows for the offline model. Columns: description, amount, expected_category
    (or category), optional transaction_type/direction, transaction_category, merchant_name,
    transaction_classification ("A|B" or "A > B"), expected_merchant."""
    with path.open(encoding="utf-8") as handle:
        raw = list(csv.DictReader(handle))
    rows = []
    for r in raw:
        amount = Decimal(str(r.get("amount") or "0").replace(",", "") or "0")
        kind = (r.get("transaction_type") or r.get("direction") or "").strip().upper()
        direction = "credit" if kind in ("CREDIT", "IN") else "debit" if kind in ("DEBIT", "OUT") else None
        direction = direction or ("credit" if amount > 0 else "debit")
        classification = (r.get("transaction_classification") or "").replace(">", "|")
        rows.append(
            {
                "description": r.get("description") or "",
                "amount": amount,
                "direction": direction,
                "transaction_category": r.get("transaction_category") or None,
                "merchant_name": r.get("merchant_name") or None,
                "classification": tuple(p.strip() for p in classification.split("|") if p.strip()),
                "category": (r.get("expected_category") or r.get("category") or "").strip(),
                "merchant": (r.get("expected_merchant") or r.get("merchant") or "").strip(),
                "region": (r.get("region") or "").strip(),
            }
        )
    return rows


def _score(rows: list[dict]) -> dict:
    from bank_pipeline.enrich.offline import OfflineModel
    from bank_pipeline.enrich.types import TxnInput

    model = OfflineModel()
    per: dict[str, list[int]] = {}
    regions: dict[str, list[int]] = {}
    right = unknown = 0
    for i, r in enumerate(rows):
        answer = model.classify(
            TxnInput(
                i,
                r["description"],
                r["amount"],
                r["direction"],
                r["merchant_name"],
                r["transaction_category"],
                r["classification"],
            )
        )
        ok = answer.category == r["category"]
        right += ok
        unknown += answer.category == "unknown"
        per.setdefault(r["category"], [0, 0])
        per[r["category"]][0] += ok
        per[r["category"]][1] += 1
        if r["region"]:
            cell = regions.setdefault(r["region"], [0, 0, 0])
            cell[0] += ok
            cell[1] += answer.category == "unknown"
            cell[2] += 1
    answered = len(rows) - unknown
    return {
        "n": len(rows),
        "accuracy": right / len(rows),
        "unknown": unknown / len(rows),
        "answered_accuracy": right / answered if answered else 0.0,
        "per": per,
        "regions": regions,
    }


def _key(description: str) -> str:
    return "".join(c for c in description.casefold() if c.isalnum())


def _print_labelled(title: str, path: Path, note: str, apart_from: tuple[Path, ...] = ()) -> None:
    """Score a labelled set; rows whose description is also in `apart_from` (sets the knowledge
    base was written or tuned with) are left out, so the figure is on unseen text only."""
    if not path.exists():
        print(f"{title}: {path} not present (the bench reads it from there when it is)")
        return
    rows = _read_labelled(path)
    seen = {_key(r["description"]) for other in apart_from for r in _read_labelled(other)}
    kept = [r for r in rows if _key(r["description"]) not in seen]
    shared = (
        f"; {len(rows) - len(kept)} rows also in {', '.join(p.name for p in apart_from)} left out"
        if seen
        else ""
    )
    s = _score(kept)
    print(
        f"{title} ({path.name}, {s['n']} rows{shared}): accuracy {s['accuracy']:.1%}, unknown {s['unknown']:.1%}, "
        f"accuracy when answering {s['answered_accuracy']:.1%} — {note}"
    )
    cells = [f"{c} {r}/{n} ({r / n:.0%})" for c, (r, n) in sorted(s["per"].items(), key=lambda kv: -kv[1][1])]
    print("  per category: " + ", ".join(cells))
    if s["regions"]:
        print(
            "  per region: "
            + ", ".join(
                f"{region} {ok}/{n} right ({ok / n:.1%}), unknown {unk / n:.1%}"
                for region, (ok, unk, n) in sorted(s["regions"].items(), key=lambda kv: -kv[1][2])
            )
        )


def _curve_point(truth: dict, share: float, kb) -> tuple[float, float, float, int]:
    """(accuracy on the rest before corrections, after with rules only, after with the classifier,
    corrections made)."""
    from sqlalchemy import select

    from bank_pipeline.db.schema import enrichments
    from bank_pipeline.enrich import categorize, enrich_account_days
    from bank_pipeline.enrich.offline import OfflineModel

    engine, account_days, truth_by_id = _fresh_db(truth)
    model = OfflineModel(kb=kb)

    def accuracy(exclude: set[int]) -> float:
        with engine.connect() as conn:
            got = dict(conn.execute(select(enrichments.c.transaction_id, enrichments.c.category)).all())
        rest = [i for i in truth_by_id if i not in exclude]
        return sum(got.get(i) == truth_by_id[i] for i in rest) / len(rest)

    enrich_account_days(engine, account_days, model, run_id="curve-0", learn=False)
    ids = sorted(truth_by_id)
    corrected = set(random.Random(11).sample(ids, round(len(ids) * share)))
    before = accuracy(corrected)
    for txn_id in sorted(corrected):
        categorize(engine, txn_id, truth_by_id[txn_id])
    enrich_account_days(engine, account_days, model, run_id="curve-rules", force=True, learn=False)
    rules_only = accuracy(corrected)
    enrich_account_days(engine, account_days, model, run_id="curve-learn", force=True, learn=True)
    learned = accuracy(corrected)
    engine.dispose()
    return before, rules_only, learned, len(corrected)


def _kb_without_merchants():
    """The knowledge base with every named merchant removed: a user whose payees it does not know."""
    import json

    from bank_pipeline.enrich.knowledge import KB_PATH, VOCABULARY_PATH, KnowledgeBase

    base = json.loads(KB_PATH.read_text(encoding="utf-8"))
    vocab = json.loads(VOCABULARY_PATH.read_text(encoding="utf-8"))
    base["merchants"], vocab["merchants"] = [], []
    return KnowledgeBase(base, "nomerchants", vocab)


def _print_curve(truth: dict) -> None:
    from bank_pipeline.enrich.knowledge import load_knowledge_base

    for label, kb in (
        ("shipped knowledge base", load_knowledge_base()),
        ("knowledge base without its merchant list (payees it does not know)", _kb_without_merchants()),
    ):
        print(f"learning curve, simulator year, {label}: corrected share → accuracy on the rest")
        for share in CURVE:
            before, rules, learned, count = _curve_point(truth, share, kb)
            print(
                f"  {share:.0%} corrected ({count}): before {before:.1%} → rules only {rules:.1%} "
                f"→ rules + classifier {learned:.1%}"
            )


def run(args) -> None:
    from bank_pipeline.enrich.pricing import PriceTable
    from bank_pipeline.enrich.queue import QueuePolicy

    _print_labelled(
        "offline, hand-labelled UK set",
        UK_SET,
        "labels and knowledge base written by the same author: an optimistic figure",
    )
    _print_labelled(
        "offline, development examples abroad/online",
        DEV_SET,
        "written with the vocabulary, used by its unit tests: optimistic",
    )
    _print_labelled(
        "offline, INDEPENDENT set",
        INDEPENDENT_SET,
        "labelled by another person from other sources; nothing was tuned on it",
        apart_from=(UK_SET, DEV_SET),
    )

    days = 92 if getattr(args, "quick", False) else 365
    truth = _ground_truth(days)
    n = sum(len(a["transactions"]) for a in truth["accounts"].values())
    print(f"simulated: {len(truth['accounts'])} accounts, {days} days, {n} booked transactions (seed 7)")

    accuracy, count, sources, misses = _offline_accuracy(truth)
    print(
        f"offline accuracy vs simulator ground truth: {accuracy:.1%} of {count} (target ≥ 85%); sources {dict(sources)}"
    )
    if misses:
        print(
            "  misses (true → offline): " + ", ".join(f"{a}→{b} ×{k}" for (a, b), k in misses.most_common(6))
        )
    _print_curve(truth)

    default = QueuePolicy()  # batch 25, delay 1 day
    # (period, label, policy, held to ≤ 1 call per 25): "at most a day" trades batching for latency.
    shapes = [
        ("backfill", "one backfill run", default, True),
        ("month", "monthly runs", default, True),
        ("day", "daily runs", default, True),
        ("day", "daily runs, every description waits at most a day", QueuePolicy(unsure_below=1.01), False),
        ("backfill", "one backfill run, Message Batches allowed", QueuePolicy(batch_api_min=100), True),
    ]
    price = PriceTable.from_env().get(MODEL)
    prefix_tokens = None
    backfill_calls = 0
    for period, label, policy, held in shapes:
        r = _anthropic_year(truth, period, policy)
        prefix_tokens = r["prefix_tokens"]
        if period == "backfill" and not policy.batch_api_min:
            backfill_calls = r["calls"]
        hits = r["sources"]["cache"] + r["sources"]["rule"]
        per_25 = r["calls"] / r["asked"] * 25 if r["asked"] else 0.0
        target = (
            f"target ≤ 1, i.e. at most {r['asked'] / 25:.1f} calls"
            if held
            else "no target: a day's latency for every description, whatever the volume"
        )
        print(
            f"anthropic ({MODEL}, queue goes at {policy.batch} queued, up to {CALL_CAP} a call, delay "
            f"{_hours(policy.delay)} if unsure (provisional confidence < {policy.unsure_below:g}) else "
            f"{_hours(policy.max_delay)}; {label}, then the next day's run; {r['runs']} runs): "
            f"{r['calls']} model calls for {r['n']} transactions; {r['asked']} distinct uncached sent → "
            f"{per_25:.2f} calls per 25 uncached ({target})"
        )
        print(
            f"  answered provisionally {r['provisional']}, replaced by the model {r['replaced']}, "
            f"still queued at the end {r['queued']}; Message Batches {r['message_batches']}"
        )
        print(
            f"  cache + rule hits {hits}/{r['n']} = {hits / r['n']:.1%} (target ≥ 80%); final sources "
            f"{dict(r['sources'])}"
        )
        t = r["tokens"]
        saved = r["saved"]
        print(
            f"  tokens in {t['input']} out {t['output']} cache read {t['cache_read']} write {t['cache_write']}; "
            f"cost ${r['cost']:.4f} = ${r['cost'] / r['n'] * 1000:.4f} per 1,000 transactions; saved "
            f"${saved['cache']:.4f} by the cache, ${saved['classifier']:.4f} by the classifier, "
            f"${saved['batching']:.4f} by batching"
        )
    # Prompt caching: does the stable prefix reach Claude Haiku 4.5's minimum, and would padding pay?
    print(
        f"prompt caching: the stable prefix (instructions, category list, tool schema) is {prefix_tokens} tokens "
        f"(the fake's count, 4 characters a token) < {HAIKU_MIN_CACHE_TOKENS}, Claude Haiku 4.5's minimum: not cached"
    )
    if price is not None and prefix_tokens:
        padded = HAIKU_MIN_CACHE_TOKENS
        write, read = price.cache_write_multiplier, price.cache_read_multiplier
        plain = Decimal(prefix_tokens)
        # calls within the cache's 5 minutes for padding to cost less than the short uncached prefix
        gain = plain - read * padded
        need = ((write - read) * padded / gain) if gain > 0 else None
        print(
            f"  padded to {padded} with examples, one call pays {write * padded:.0f} token-equivalents written vs "
            f"{plain:.0f} plain; it pays only from "
            + (f"{need:.1f} calls within 5 minutes" if need else "never")
            + f" — the queued daily and monthly shapes make about one call a run, the backfill made {backfill_calls} "
            "in one run: not worth padding the prompt"
        )
