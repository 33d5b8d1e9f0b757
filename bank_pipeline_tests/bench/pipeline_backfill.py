"""A year × 5 accounts through Dagster, against one run per partition (why backfills coalesce).

Both sides are launched the same way, with `dagster job execute` in a fresh process (the cost a
run launcher pays for every run), against the simulator with 100 ms injected latency per call:
(a) the whole account × day rectangle as ONE run (what a single-run backfill launches);
(b) the baseline: one run per partition, timed on a sample of partitions and extrapolated.
Each is run on dagster-postgres and on the embedded SQLite instance of the repo's dagster.yaml;
(a) also on Dagster's stock SQLite storage, which the repo's storages replace (sqlite_storage.py).
The summary prints (a) on each SQLite storage relative to dagster-postgres (target: <= 2x).
After (a) on dagster-postgres, the three analytics downstream of the ledger (transfers, recurring
payments, monthly spending: the assets' plain functions, over the whole year just loaded) are
timed against the import's wall time (target: together < 20%).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time

import sqlalchemy as sa

from bank_pipeline.db import make_engine
from bank_pipeline.db.schema import metadata, transactions
from bank_pipeline.orchestration.partitions import partition_key, sync_account_partitions
from bank_pipeline.orchestration.tuning import apply_event_log_defaults
from bank_pipeline_tests.bench._harness import DAGSTER_STORAGES, connected_user, reset_sim_stats, sim_stats

TODAY = dt.date(2026, 11, 20)
# What the connection leaves (the connection, its accounts, their mandates); everything else is
# cleared, children before parents, before the per-partition baseline.
KEPT_TABLES = {"oauth_states", "connections", "accounts", "bank_mandates"}


def _env(settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        BANK_PIPELINE_DATABASE_URL=settings.database_url,
        TRUELAYER_AUTH_URL=settings.auth_url,
        TRUELAYER_DATA_URL=settings.data_url,
        BANK_PIPELINE_HOME=str(settings.home),
        BANK_PIPELINE_FERNET_KEYS=",".join(settings.fernet_keys),
        BANK_PIPELINE_UNATTENDED_DAILY_BUDGET=str(settings.unattended_daily_budget),
        PYTHONWARNINGS="ignore",
    )
    apply_event_log_defaults(env)  # as docs/running.md tells a deployment to set for its run workers
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _dagster_execute(env: dict[str, str], tags: dict[str, str]) -> float:
    started = time.perf_counter()
    cmd = [os.path.join(os.path.dirname(sys.executable), "dagster"), "job", "execute", "-m", "bank_pipeline",
           "-j", "import_transactions", "--tags", json.dumps(tags)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"dagster job execute failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def run(args) -> None:
    walls = {}
    for storage in ("postgres", "sqlite", "sqlite-stock"):
        print(f"\n--- Dagster instance storage: {DAGSTER_STORAGES[storage]}", flush=True)
        walls[storage] = _run(args, storage, per_partition_baseline=storage != "sqlite-stock")
    print("\n--- (a) single-run backfill, wall time by Dagster instance storage (same script)")
    print(f"    {DAGSTER_STORAGES['postgres']}: {walls['postgres']:.1f}s")
    for storage in ("sqlite", "sqlite-stock"):
        print(f"    {DAGSTER_STORAGES[storage]}: {walls[storage]:.1f}s = "
              f"{walls[storage] / walls['postgres']:.2f}x dagster-postgres"
              + (" (target <= 2x)" if storage == "sqlite" else ""))


def _time_analytics(engine, first: dt.date, last: dt.date, import_wall: float) -> None:
    """The analytics assets' work over the ledger just imported, each timed on its own."""
    from bank_pipeline.analytics import monthly
    from bank_pipeline.analytics.recurring import update_recurring
    from bank_pipeline.analytics.transfers import update_transfers
    from bank_pipeline.db.schema import accounts

    with engine.connect() as conn:
        account_ids = conn.execute(sa.select(accounts.c.id)).scalars().all()
    months = monthly.months_between(first, last)
    timings = {}
    started = time.perf_counter()
    pairs = update_transfers(engine, run_id="bench").new_pairs
    timings["transfers"] = time.perf_counter() - started
    started = time.perf_counter()
    update_recurring(engine, asof=last, run_id="bench")
    timings["recurring_payments"] = time.perf_counter() - started
    started = time.perf_counter()
    rows = len(monthly.refresh(engine, {account_id: months for account_id in account_ids}, run_id="bench"))
    timings["monthly_spending"] = time.perf_counter() - started
    total = sum(timings.values())
    print(f"    analytics over that ledger ({pairs} transfer pairs, {rows} monthly rows): "
          + ", ".join(f"{name} {seconds:.2f}s" for name, seconds in timings.items())
          + f"; together {total:.2f}s = {100 * total / import_wall:.1f}% of the import's wall time (target < 20%)")


def _event_log_records(instance) -> int:
    run_id = instance.get_runs(limit=1)[0].run_id
    return len(instance.get_records_for_run(run_id, limit=1_000_000).records)


def _run(args, storage: str, *, per_partition_baseline: bool) -> float:
    days = 60 if args.quick else 365
    sample = 4 if args.quick else 8
    last = TODAY - dt.timedelta(days=1)
    first = last - dt.timedelta(days=days - 1)

    with connected_user("multi-5", TODAY, latency_ms=100, dagster_storage=storage) as (settings, sim, instance, accounts):
        keys = [a["account_key"] for a in accounts]
        sync_account_partitions(instance, keys)  # in this order, so the rectangle is exactly these accounts
        env = _env(settings)
        engine = make_engine(settings.database_url)
        partitions = days * len(keys)

        reset_sim_stats(sim)
        cpu = _children_cpu()
        wall = _dagster_execute(env, {
            "dagster/asset_partition_range_start": partition_key(keys[0], first),
            "dagster/asset_partition_range_end": partition_key(keys[-1], last),
        })
        cpu = _children_cpu() - cpu
        stats = sim_stats(sim)
        with engine.connect() as conn:
            loaded = conn.execute(sa.select(sa.func.count()).select_from(transactions)).scalar_one()
        calls = int(stats["data_api_calls"])
        txn_calls = sum(v for k, v in stats["paths"].items() if k.endswith("/transactions"))
        print(f"(a) single-run backfill: {days} days x {len(keys)} accounts = {partitions} partitions, "
              f"100 ms per TrueLayer call")
        print(f"    wall {wall:.1f}s (CPU {cpu:.1f}s in the run's process), {loaded} transactions, {loaded / wall:.0f} txn/s, runs launched: 1, "
              f"event-log records: {_event_log_records(instance)}")
        print(f"    Data API calls: {calls}; transactions calls: {txn_calls} "
              f"(= {txn_calls / len(keys):.1f} per account; at most 1 per 90 days allows {-(-days // 90)})")

        if storage == "postgres":
            _time_analytics(engine, first, last, wall)
        if not per_partition_baseline:
            return wall
        # (b) one run per partition, on a sample of partitions spread over the year, from a clean ledger.
        with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                if table.name not in KEPT_TABLES:
                    conn.execute(table.delete())
        reset_sim_stats(sim)
        step = max(1, days // sample)
        sample_keys = [partition_key(keys[i % len(keys)], first + dt.timedelta(days=i * step)) for i in range(sample)]
        per_run = sum(_dagster_execute(env, {"dagster/partition": key}) for key in sample_keys) / sample
        per_calls = int(sim_stats(sim)["data_api_calls"]) / sample
        projected = per_run * partitions
        print(f"(b) one run per partition: {per_run:.2f}s and {per_calls:.1f} Data API calls per run "
              f"(mean of {sample}); projected for {partitions} partitions: {projected:.0f}s "
              f"({projected / 3600:.1f} h), {per_calls * partitions:.0f} API calls, {partitions} runs")
        print(f"    single-run backfill is {projected / wall:.0f}x faster (target >= 50x) "
              f"and makes {per_calls * partitions / max(calls, 1):.0f}x fewer API calls")
        return wall
