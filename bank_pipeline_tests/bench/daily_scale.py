"""The daily import at scale (issue 13): one run per account vs runs of up to 50 accounts.

Both on the same connected accounts (the simulator's `multi-N` user, 100 ms per bank call), after
30 days of history landed: yesterday + the look-back window, runs executed one after another as
the daemon's queue would launch them. Prints runs launched, bank calls, wall time and the cost per
account of each way, and what that means for 1,000 accounts.

    python -m bank_pipeline_tests.bench daily_scale            # 50 accounts, a sample of 10 one by one
    BENCH_SCALE_ACCOUNTS=20 python -m bank_pipeline_tests.bench daily_scale
"""

from __future__ import annotations

import datetime as dt
import os
import time

from bank_pipeline import clock
from bank_pipeline.orchestration.partitions import (
    ACCOUNTS_PARTITIONS_NAME,
    group_range_tags,
    sync_account_partitions,
)
from bank_pipeline.orchestration.runner import import_job
from bank_pipeline.orchestration.schedules import daily_run_requests
from bank_pipeline_tests.bench._harness import connected_user, reset_sim_stats, sim_stats

TODAY = dt.date(2026, 11, 20)
POPULATION = 1000


def _execute(job, instance, requests) -> float:
    started = time.perf_counter()
    for request in requests:
        result = job.execute_in_process(instance=instance, tags=request.tags, raise_on_error=False)
        assert result.success, f"run {result.run_id} failed"
    return time.perf_counter() - started


def run(args) -> None:
    size = int(os.environ.get("BENCH_SCALE_ACCOUNTS") or (10 if args.quick else 50))
    if not 1 <= size <= 50:
        raise SystemExit(f"BENCH_SCALE_ACCOUNTS must be 1..50 (the simulator's multi-N user), got {size}")
    sample = max(1, min(size, 3 if args.quick else 10))
    tick = dt.datetime.combine(TODAY, dt.time(6, 0), tzinfo=dt.timezone.utc)
    with clock.pinned(TODAY):
        with connected_user(f"multi-{size}", TODAY, latency_ms=100) as (settings, sim, instance, accounts):
            sync_account_partitions(instance, [a["account_key"] for a in accounts])
            order = list(instance.get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME))
            job = import_job(settings)
            # The history a daily run finds already there: the last 30 days, landed once (one run).
            history = group_range_tags(order, TODAY - dt.timedelta(days=30), TODAY - dt.timedelta(days=2))
            assert job.execute_in_process(instance=instance, tags=history).success

            figures = {}
            for label, keys, per_run in (
                ("one run per account", order[:sample], 1),
                (f"grouped, {settings.accounts_per_run} a run", order, settings.accounts_per_run),
            ):
                reset_sim_stats(sim)
                requests = daily_run_requests(keys, tick, settings.timezone, settings.lookback_days, per_run)
                wall = _execute(job, instance, requests)
                calls = sim_stats(sim).get("data_api_calls")
                figures[label] = (len(keys), len(requests), calls, wall)
            print(f"daily import, yesterday + {settings.lookback_days}-day look-back, 100 ms per bank call, "
                  f"fetch concurrency {settings.fetch_concurrency}, SQLite app DB and Dagster storage:")
            for label, (n, runs, calls, wall) in figures.items():
                per_account = wall / n
                print(f"  {label:<22} {n:>3} accounts: {runs:>3} runs, {calls} Data API calls, wall {wall:.1f}s "
                      f"({per_account:.2f}s per account; {POPULATION:,} accounts ≈ {per_account * POPULATION / 60:.0f} min)")
