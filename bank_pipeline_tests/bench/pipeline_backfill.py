"""A year × 5 accounts through Dagster, against one-run-per-partition (issue: coalescing backfills).

(a) 365 days × 5 accounts, 100 ms injected latency per TrueLayer call, as ONE Dagster run over
    the whole account × day rectangle (what a single-run backfill launches): wall time,
    transactions/s, runs launched, API calls.
(b) The baseline: the same work one run per partition, timed on a sample of partitions and
    extrapolated to all 1,825 (in-process runs: this leaves out the ~3 s a real run launcher
    spends starting each run, so the baseline is flattered, not handicapped).
"""

from __future__ import annotations

import datetime as dt
import time

import sqlalchemy as sa

from bank_pipeline.db import make_engine
from bank_pipeline.db.schema import transactions
from bank_pipeline.orchestration.partitions import partition_key, sync_account_partitions
from bank_pipeline.orchestration.runner import import_job
from bank_pipeline_tests.bench._harness import connected_user, reset_sim_stats, sim_stats

TODAY = dt.date(2026, 11, 20)


def _data_calls(stats: dict) -> int:
    return int(stats["data_api_calls"])


def run(args) -> None:
    days = 60 if args.quick else 365
    sample = 5 if args.quick else 15
    last = TODAY - dt.timedelta(days=1)
    first = last - dt.timedelta(days=days - 1)

    with connected_user("multi-5", TODAY, latency_ms=100) as (settings, sim, instance, accounts):
        keys = [a["account_key"] for a in accounts]
        sync_account_partitions(instance, keys)
        job = import_job(settings)
        engine = make_engine(settings.database_url)

        reset_sim_stats(sim)
        started = time.perf_counter()
        result = job.execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": partition_key(keys[0], first),
                "dagster/asset_partition_range_end": partition_key(keys[-1], last),
            },
        )
        wall = time.perf_counter() - started
        assert result.success
        stats = sim_stats(sim)
        with engine.connect() as conn:
            loaded = conn.execute(sa.select(sa.func.count()).select_from(transactions)).scalar_one()
        calls = _data_calls(stats)
        txn_calls = sum(v for k, v in stats.get("paths", {}).items() if k.endswith("/transactions"))
        partitions = days * len(keys)
        print(f"(a) single-run backfill: {days} days x {len(keys)} accounts = {partitions} partitions")
        print(f"    wall {wall:.1f}s, {loaded} transactions, {loaded / wall:.0f} txn/s, runs launched: 1")
        print(f"    Data API calls: {calls} (transactions endpoint: {txn_calls}; "
              f"limit at 1 per 90 days per account: {len(keys) * -(-days // 90)})")

        # (b) one run per partition on a sample, in a fresh ledger so the work is the same.
        with engine.begin() as conn:
            for table in ("enrichments", "transactions", "pending_transactions", "staged_transactions",
                          "quarantine", "raw_transactions", "raw_fetches", "api_call_budget"):
                conn.execute(sa.text(f"DELETE FROM {table}"))
        reset_sim_stats(sim)
        sample_days = [first + dt.timedelta(days=i * (days // sample)) for i in range(sample)]
        started = time.perf_counter()
        for day in sample_days:
            one = job.execute_in_process(instance=instance, partition_key=partition_key(keys[0], day))
            assert one.success
        per_run = (time.perf_counter() - started) / sample
        per_calls = _data_calls(sim_stats(sim)) / sample
        projected = per_run * partitions
        print(f"(b) one run per partition: {per_run:.2f}s and {per_calls:.1f} API calls per partition "
              f"(sample of {sample}); projected for {partitions}: {projected:.0f}s, "
              f"{per_calls * partitions:.0f} API calls, {partitions} runs")
        print(f"    speed-up of the single-run backfill: {projected / wall:.0f}x (target >= 50x); "
              f"API calls {per_calls * partitions / max(calls, 1):.0f}x fewer")
