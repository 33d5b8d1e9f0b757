"""The daily import at scale (issue 13): one run per account vs runs of up to 50 accounts.

Both on the same connected accounts (the simulator's `multi-N` user, 100 ms per bank call), after
a week of history landed: yesterday + the look-back window, runs executed one after another as
the daemon's queue would launch them. Prints runs launched, bank calls, wall time and the cost per
account of each way, and what that means for 1,000 accounts.

    python -m bank_pipeline_tests.bench daily_scale            # 50 accounts, a sample of 10 one by one
    BENCH_SCALE_ACCOUNTS=20 python -m bank_pipeline_tests.bench daily_scale
    BENCH_SCALE_ACCOUNTS=1000 python -m bank_pipeline_tests.bench daily_scale   # the whole population
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time

from bank_pipeline import clock
from bank_pipeline.orchestration.partitions import (
    ACCOUNTS_PARTITIONS_NAME,
    group_range_tags,
    sync_account_partitions,
)
from bank_pipeline.orchestration.schedules import daily_run_requests
from bank_pipeline.runner import import_job
from bank_pipeline.simulator.generator import MAX_MULTI
from bank_pipeline_tests.bench._harness import connected_user, reset_sim_stats, sim_stats

TODAY = dt.date(2026, 11, 20)
POPULATION = 1000


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _execute(job, instance, requests) -> tuple[float, float]:
    """(wall seconds, seconds spent in the fetch steps) for the runs, one after another."""
    from bank_pipeline.runner import _metadata_by_asset

    started = time.perf_counter()
    fetch = 0.0
    for request in requests:
        result = job.execute_in_process(instance=instance, tags=request.tags, run_config=QUIET, raise_on_error=False)
        assert result.success, f"run {result.run_id} failed"
        fetch += _metadata_by_asset(result)["fetched_transactions"]["seconds"]
    return time.perf_counter() - started, fetch


def run(args) -> None:
    size = int(os.environ.get("BENCH_SCALE_ACCOUNTS") or (10 if args.quick else 50))
    if not 1 <= size <= MAX_MULTI:
        raise SystemExit(
            f"BENCH_SCALE_ACCOUNTS must be 1..{MAX_MULTI} (the simulator's multi-N user), got {size}"
        )
    sample = max(1, min(size, 3 if args.quick else 10))
    tick = dt.datetime.combine(TODAY, dt.time(6, 0), tzinfo=dt.timezone.utc)
    with clock.pinned(TODAY):
        with connected_user(f"multi-{size}", TODAY, latency_ms=100) as (settings, sim, instance, accounts):
            sync_account_partitions(instance, [a["account_key"] for a in accounts])
            order = list(instance.get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME))
            job = import_job(settings)
            # The history a daily run finds already there: the week before, landed once (one run).
            history = group_range_tags(order, TODAY - dt.timedelta(days=8), TODAY - dt.timedelta(days=2))
            assert job.execute_in_process(instance=instance, tags=history, run_config=QUIET).success

            per_run = settings.accounts_per_run
            figures = {}
            for label, keys, group, concurrency in (
                ("one run per account", order[:sample], 1, 1),
                (f"{per_run} a run, 1 call at once", order, per_run, 1),
                (f"{per_run} a run, {settings.fetch_concurrency} at once", order, per_run, settings.fetch_concurrency),
            ):
                reset_sim_stats(sim)
                requests = daily_run_requests(keys, tick, settings.timezone, settings.lookback_days, group)
                run_job = import_job(dataclasses.replace(settings, fetch_concurrency=concurrency))
                wall, fetch = _execute(run_job, instance, requests)
                calls = sim_stats(sim).get("data_api_calls")
                figures[label] = (len(keys), len(requests), calls, wall, fetch)
            print(f"daily import, yesterday + {settings.lookback_days}-day look-back, 100 ms per bank call, "
                  "SQLite app DB and Dagster storage, runs one after another:")
            for label, (n, runs, calls, wall, fetch) in figures.items():
                per_account = wall / n
                print(f"  {label:<24} {n:>3} accounts: {runs:>3} runs, {calls} Data API calls, wall {wall:.1f}s, "
                      f"fetch steps {fetch:.1f}s ({per_account:.2f}s per account; {POPULATION:,} accounts "
                      f"≈ {per_account * POPULATION / 60:.0f} min)")
