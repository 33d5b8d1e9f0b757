"""Wall time of the daily scheduled import for 10 accounts, run by the schedule."""

from __future__ import annotations

import datetime as dt
import time

from bank_pipeline.orchestration.partitions import sync_account_partitions
from bank_pipeline.orchestration.schedules import daily_run_requests
from bank_pipeline.runner import import_job
from bank_pipeline_tests.bench._harness import connected_user, reset_sim_stats, sim_stats

TODAY = dt.date(2026, 11, 20)


def run(args) -> None:
    tick = dt.datetime.combine(TODAY, dt.time(6, 0), tzinfo=dt.timezone.utc)
    with connected_user("multi-10", TODAY, latency_ms=100) as (settings, sim, instance, accounts):
        keys = [a["account_key"] for a in accounts]
        sync_account_partitions(instance, keys)
        job = import_job(settings)
        # The history a daily run finds already there: the last 30 days imported once.
        first_history = TODAY - dt.timedelta(days=30)
        for key in keys:
            from bank_pipeline.orchestration.partitions import range_tags

            job.execute_in_process(instance=instance, tags=range_tags(key, first_history, TODAY - dt.timedelta(days=2)))
        reset_sim_stats(sim)
        requests = daily_run_requests(keys, tick, settings.timezone, settings.lookback_days)
        started = time.perf_counter()
        for request in requests:
            assert job.execute_in_process(instance=instance, tags=request.tags).success
        wall = time.perf_counter() - started
        stats = sim_stats(sim)
        print(f"daily scheduled import, {len(keys)} accounts, look-back {settings.lookback_days} days, "
              f"100 ms per TrueLayer call: {len(requests)} runs, wall {wall:.1f}s "
              f"({wall / len(requests):.2f}s per account run), Data API calls {stats.get('data_api_calls')}")
