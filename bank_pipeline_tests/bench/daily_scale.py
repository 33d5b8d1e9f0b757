"""The daily import at scale (a thousand accounts), through the Dagster daemon: runs of up to 50 accounts vs
one run per account.

The user's path: the simulator's `multi-N` user connected through the real OAuth flow into a
PostgreSQL application database, Dagster on deploy/postgres's storage classes (a fresh
database), a week of history landed first (in-process, before the daemon starts; not measured),
then `dagster-webserver` + `dagster-daemon run` start and the **daily schedule** ticks: its cron
(BANK_PIPELINE_SCHEDULE_CRON) names one minute a minute or two ahead, so the daemon fires it
once, on its own clock. The runs import yesterday + the 3-day look-back
with 100 ms per bank call, queued and launched by the daemon (the repository's dagster.yaml run
queue). Measured from the instance (GraphQL): runs launched and their statuses, the tick's
scheduled time → the last run's end (wall), the runs' durations and queue waits, time in each
step, Data API calls (the simulator's stats) and ledger rows in the window.

The baseline, in the same script: one run per account (BANK_PIPELINE_ACCOUNTS_PER_RUN=1) on a
sample (`multi-10`: the same account layout as multi-1000's first ten) through the same path, its
cost per account, and that cost times 1,000.

The pipeline's clock is pinned to TODAY in every process (BANK_PIPELINE_CLOCK_OFFSET, which
`dagster_services` passes on); the daemon ticks on the wall clock and the schedule reads its
tick on the pipeline's clock, so the figures do not depend on today's date. The analytics
automation (`analytics_automation`, evaluated by Dagster's asset daemon) is off for the
measurement unless DAILY_SCALE_SENSORS=on: it would queue a run per changed account-month
beside the import runs. The other sensors stay on (they have nothing to do here).

    python -m bank_pipeline_tests.bench daily_scale                   # 1,000 accounts, sample of 10
    python -m bank_pipeline_tests.bench --quick daily_scale           # 20 accounts, 5 a run, sample of 3
    BENCH_SCALE_ACCOUNTS=200 python -m bank_pipeline_tests.bench daily_scale
    DAILY_SCALE_MODE=in-process python -m bank_pipeline_tests.bench daily_scale   # the old form

Environment: BENCH_SCALE_ACCOUNTS (1..1000), BENCH_SCALE_SAMPLE (baseline accounts),
BENCH_SCALE_PER_RUN (accounts per run; default the pipeline's, 50), DAILY_SCALE_SENSORS (off|on),
DAILY_SCALE_MODE (daemon|in-process), BANK_PIPELINE_TEST_POSTGRES_URL (the PostgreSQL server).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import math
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from bank_pipeline import clock
from bank_pipeline.orchestration.partitions import (
    ACCOUNTS_PARTITIONS_NAME,
    group_accounts,
    group_range_tags,
    sync_account_partitions,
)
from bank_pipeline.orchestration.schedules import daily_run_requests
from bank_pipeline.runner import import_job
from bank_pipeline.simulator.generator import MAX_MULTI
from bank_pipeline_tests.bench._harness import connected_user, reset_sim_stats, sim_stats

TODAY = dt.date(2026, 11, 20)
POPULATION = 1000
LATENCY_MS = 100
# The simulator generates this many days per account (lazily, on an account's first read): the
# bench reads only the last nine, so a short history keeps generation out of the figures.
SIM_HISTORY_DAYS = 30
# The week before the daily window, landed before the daemon starts.
HISTORY_FIRST, HISTORY_LAST = TODAY - dt.timedelta(days=8), TODAY - dt.timedelta(days=2)
# Not 200: dagster-postgres indexes run tags, and the `bank_pipeline/accounts` tag of a run over
# ~190 accounts passes PostgreSQL's btree row limit (2,704 bytes): the run cannot even be created.
HISTORY_ACCOUNTS_PER_RUN = 100
SCHEDULE = "daily_import_schedule"
SCHEDULE_TAG = "dagster/schedule_name"
TICK_TIMEOUT = 1800
ANALYTICS_WATCH_SECONDS = 150  # DAILY_SCALE_SENSORS=on: watch the automation this long after the imports
POSTGRES_ENV = "BANK_PIPELINE_TEST_POSTGRES_URL"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# Dagster's asset daemon off: no automation-condition sensor is evaluated (analytics_automation).
NO_ANALYTICS_AUTOMATION = {"auto_materialize": {"enabled": False, "use_sensors": False}}

STEP_STATS = """
query Steps($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { stepStats { stepKey status startTime endTime } }
    ... on Error { message }
  }
}"""


@dataclasses.dataclass
class Tick:
    """One daily tick through the daemon, as the instance recorded it."""

    label: str
    accounts: int
    per_run: int
    scheduled: float  # the tick's time (epoch seconds, wall clock)
    runs: list  # dagster_graphql_client.BackfillRun
    ticks: list[dict]
    steps: dict[str, list[float]]  # step key -> durations, one per run
    calls: int
    window: tuple[dt.date, dt.date]  # the daily window's days
    ledger_before: int  # ledger rows booked in the window
    ledger_after: int
    other_runs: list  # runs launched beside the schedule's while the daemon ran (e.g. analytics automation)

    @property
    def last_end(self) -> float:
        return max(r.ended for r in self.runs)

    @property
    def wall(self) -> float:
        return self.last_end - self.scheduled

    @property
    def statuses(self) -> dict[str, int]:
        from bank_pipeline_tests.dagster_graphql_client import run_statuses

        return run_statuses(self.runs)


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"min {min(values):.1f}s / median {statistics.median(values):.1f}s / max {max(values):.1f}s"


def _ledger_rows(engine, first: dt.date, last: dt.date) -> int:
    from bank_pipeline.db.schema import transactions

    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(transactions).where(transactions.c.booking_date.between(first, last))
        ).scalar_one()


def _land_history(settings, storage: dict, keys: list[str], workdir: Path) -> float:
    """The week before the daily window through the import job, in-process on the bench's Dagster
    storage, before any daemon runs (a daily run finds it there). Returns seconds."""
    import dagster as dg

    started = time.perf_counter()
    workdir.mkdir()
    with dg.instance_for_test(temp_dir=str(workdir), overrides=storage) as instance:
        sync_account_partitions(instance, keys)
        order = list(instance.get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME))
        job = import_job(settings)
        for group in group_accounts(order, HISTORY_ACCOUNTS_PER_RUN):
            result = job.execute_in_process(
                instance=instance, tags=group_range_tags(group, HISTORY_FIRST, HISTORY_LAST), run_config=QUIET,
                raise_on_error=False,
            )
            if not result.success:
                raise SystemExit(f"history run {result.run_id} for {group[0]}..{group[-1]} failed")
    return time.perf_counter() - started


def _step_durations(gql, run_ids: list[str]) -> dict[str, list[float]]:
    steps: dict[str, list[float]] = {}
    for run_id in run_ids:
        answer = gql.query(STEP_STATS, {"runId": run_id})["runOrError"]
        for step in answer.get("stepStats") or []:
            if step["startTime"] and step["endTime"]:
                steps.setdefault(step["stepKey"], []).append(step["endTime"] - step["startTime"])
    return steps


def _daily_tick(label: str, sim, user: str, per_run: int, sensors: bool, workdir: Path) -> Tick:
    from bank_pipeline.connections.flow import connect
    from bank_pipeline.db import make_engine
    from bank_pipeline_tests.dagster_graphql_client import DagsterGraphQL
    from bank_pipeline_tests.dagster_services import (
        dagster_services,
        one_tick_cron,
        postgres_dagster_database,
    )
    from bank_pipeline_tests.fixtures.database import postgres_schema_url
    from bank_pipeline_tests.fixtures.pipeline import settings_for

    workdir.mkdir()
    with postgres_schema_url() as app_url, postgres_dagster_database() as storage:
        settings = settings_for(app_url, sim, workdir / "home", unattended_daily_budget=100_000,
                                accounts_per_run=per_run)
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # connect lists every account
            result = connect(settings, simulator_user=user, open_browser=False, timeout=300)
        keys = sorted(a["account_key"] for a in result.accounts)
        connected = time.perf_counter() - started
        history = _land_history(settings, storage, keys, workdir / "history")
        engine = make_engine(app_url)
        last = TODAY - dt.timedelta(days=1)
        first = last - dt.timedelta(days=settings.lookback_days)
        before = _ledger_rows(engine, first, last)
        print(f"  {label}: {user} connected (OAuth, {len(keys)} accounts) in {connected:.1f}s; history "
              f"{HISTORY_FIRST}..{HISTORY_LAST} landed in {history:.1f}s ({HISTORY_ACCOUNTS_PER_RUN} accounts a run, "
              "in-process, not measured)", flush=True)
        reset_sim_stats(sim)
        cron, due = one_tick_cron(settings.timezone, not_before_seconds=45)  # webserver + daemon start in ~5 s
        settings = dataclasses.replace(settings, schedule_cron=cron)
        started = time.perf_counter()
        services_started = time.time()
        overrides = None if sensors else NO_ANALYTICS_AUTOMATION
        with dagster_services(settings, workdir, storage=storage, instance_overrides=overrides) as services:
            print(f"    webserver + daemon ready in {time.perf_counter() - started:.1f}s; the schedule's cron "
                  f"'{cron}' fires at {due:%H:%M} UTC (once) ({math.ceil(len(keys) / per_run)} runs of up to {per_run})", flush=True)
            gql = DagsterGraphQL(services.url)
            runs = gql.wait_for_runs({SCHEDULE_TAG: SCHEDULE}, math.ceil(len(keys) / per_run), timeout=TICK_TIMEOUT,
                                     alive=services.check_alive, progress=lambda text: print(f"    ... {text}", flush=True))
            calls = sim_stats(sim).get("data_api_calls")
            if sensors:  # what the automation launches after the imports (its sensor ticks every 60 s)
                for _ in range(ANALYTICS_WATCH_SECONDS):
                    services.check_alive()
                    time.sleep(1)
            ticks = gql.schedule_ticks(SCHEDULE)
            ours = {r.run_id for r in runs}
            other = [r for r in gql.runs() if r.run_id not in ours and r.created >= services_started]
            steps = _step_durations(gql, sorted(ours))
        fired = [t for t in ticks if set(t["runIds"]) & ours]
        scheduled = min(t["timestamp"] for t in fired) if fired else min(r.created for r in runs)
        after = _ledger_rows(engine, first, last)
        engine.dispose()
        return Tick(label, len(keys), per_run, scheduled, runs, ticks, steps, calls, (first, last), before, after,
                    other)


def _report(tick: Tick) -> float:
    """Print one tick's figures; returns its wall seconds per account."""
    created = [r.created for r in tick.runs]
    started = [r.started for r in tick.runs if r.started]
    durations = [r.ended - r.started for r in tick.runs if r.started and r.ended]
    waits = [r.started - r.created for r in tick.runs if r.started]
    per_account = tick.wall / tick.accounts
    print(f"  {tick.label}: {tick.accounts} accounts, {tick.per_run} a run -> {len(tick.runs)} runs launched "
          f"{tick.statuses}, Data API calls {tick.calls}, wall {tick.wall:.1f}s (tick -> last run ended; "
          f"{per_account:.2f}s per account)", flush=True)
    print(f"    tick at {dt.datetime.fromtimestamp(tick.scheduled, dt.timezone.utc):%H:%M:%S} UTC -> first run created "
          f"+{min(created) - tick.scheduled:.1f}s, last created +{max(created) - tick.scheduled:.1f}s, first started +{min(started) - tick.scheduled:.1f}s; runs span "
          f"(first start -> last end) {tick.last_end - min(started):.1f}s", flush=True)
    print(f"    run duration (start -> end) {_spread(durations)}; queue + process start-up (created -> started) {_spread(waits)}",
          flush=True)
    in_steps = sum(sum(v) for v in tick.steps.values())
    print(f"    time in steps {in_steps:.1f}s of {sum(durations):.1f}s run time "
          f"({sum(durations) - in_steps:.1f}s between the runs' start and end outside steps):",
          flush=True)
    for key, values in sorted(tick.steps.items(), key=lambda kv: -sum(kv[1])):
        print(f"      {key:<50} {sum(values):7.1f}s in all, {_spread(values)}", flush=True)
    print(f"    ledger rows {tick.window[0]}..{tick.window[1]}: {tick.ledger_before} before, "
          f"{tick.ledger_after} after (+{tick.ledger_after - tick.ledger_before}); schedule ticks "
          f"{[t['status'] for t in reversed(tick.ticks)]}", flush=True)
    if tick.other_runs:
        by = Counter(f"{r.tags.get('dagster/sensor_name') or r.tags.get('bank_pipeline/trigger') or 'other'} {r.status}"
                     for r in tick.other_runs)
        spans = [f"+{r.started - tick.scheduled:.0f}s..+{r.ended - tick.scheduled:.0f}s" if r.started and r.ended
                 else r.status for r in tick.other_runs]
        print(f"    other runs launched while the daemon ran: {dict(by)}, from the tick {spans}", flush=True)
    else:
        print("    no other run launched while the daemon ran", flush=True)
    return per_account


def _max_concurrent_runs() -> int:
    from bank_pipeline.orchestration.instance import packaged_config

    return packaged_config()["concurrency"]["runs"]["max_concurrent_runs"]


def _run_daemon(args) -> None:
    from bank_pipeline.simulator import FaultConfig, SimulatorConfig, run_in_thread

    size = int(os.environ.get("BENCH_SCALE_ACCOUNTS") or (20 if args.quick else POPULATION))
    if not 1 <= size <= MAX_MULTI:
        raise SystemExit(f"BENCH_SCALE_ACCOUNTS must be 1..{MAX_MULTI} (the simulator's multi-N user), got {size}")
    sample = int(os.environ.get("BENCH_SCALE_SAMPLE") or min(size, 3 if args.quick else 10))
    per_run = int(os.environ.get("BENCH_SCALE_PER_RUN") or (5 if args.quick else 0)) or None
    sensors = os.environ.get("DAILY_SCALE_SENSORS", "off").lower() == "on"
    config = SimulatorConfig(seed=42, today=TODAY, history_days=SIM_HISTORY_DAYS,
                             faults=FaultConfig(unattended_limit=None, latency_ms=LATENCY_MS))
    with tempfile.TemporaryDirectory() as tmp, run_in_thread(config, host="127.0.0.1", port=0) as sim:
        from bank_pipeline.config import Settings

        per_run = per_run or Settings.from_env().accounts_per_run
        print(f"daily import through dagster-webserver + dagster-daemon: yesterday + the look-back, {LATENCY_MS} ms "
              f"per bank call, PostgreSQL app DB, dagster-postgres storage (deploy/postgres's classes), the "
              f"repository's run queue (at most {_max_concurrent_runs()} runs at once); simulator history {SIM_HISTORY_DAYS} days per account, generated on first "
              f"read; analytics automation {'ON' if sensors else 'OFF (DAILY_SCALE_SENSORS=on to include it)'}",
              flush=True)
        baseline = _daily_tick("one run per account", sim, f"multi-{sample}", 1, sensors, Path(tmp) / "baseline")
        base_cost = _report(baseline)
        grouped = _daily_tick(f"{per_run} accounts a run", sim, f"multi-{size}", per_run, sensors, Path(tmp) / "grouped")
        cost = _report(grouped)
        generated = {user: sim.app_state.user_data(user).accounts.generated for user in (f"multi-{sample}", f"multi-{size}")}
        print(f"  simulator generated {SIM_HISTORY_DAYS} days for {generated} accounts (an account's money group "
              "on its first read)", flush=True)
        print(f"  per account: one run each {base_cost:.2f}s ({POPULATION:,} accounts ≈ {base_cost * POPULATION / 60:.0f} "
              f"min in {POPULATION:,} runs, linearly); {per_run} a run {cost:.2f}s ({grouped.accounts:,} accounts in "
              f"{grouped.wall / 60:.1f} min, {len(grouped.runs)} runs): {base_cost / cost:.1f}x less per account",
              flush=True)
        failed = [r for r in grouped.runs + grouped.other_runs if r.status != "SUCCESS"]
        if failed:
            print(f"  runs that did not succeed: {dict(Counter(r.status for r in failed))} (a target is never met over them)",
                  flush=True)
        if grouped.accounts == POPULATION:
            ok = len(grouped.runs) <= 20 and grouped.wall <= 300 and not failed
            print(f"  target (≤ 20 runs, ≤ 5 min wall for {POPULATION:,} accounts, every run succeeded): "
                  f"{'met' if ok else 'NOT met'}", flush=True)


# --- the former form: the run requests executed in-process on SQLite, one after another ---------


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


def _run_in_process(args) -> None:
    size = int(os.environ.get("BENCH_SCALE_ACCOUNTS") or (10 if args.quick else 50))
    if not 1 <= size <= MAX_MULTI:
        raise SystemExit(f"BENCH_SCALE_ACCOUNTS must be 1..{MAX_MULTI} (the simulator's multi-N user), got {size}")
    sample = max(1, min(size, 3 if args.quick else 10))
    tick = dt.datetime.combine(TODAY, dt.time(6, 0), tzinfo=dt.timezone.utc)
    with connected_user(f"multi-{size}", TODAY, latency_ms=LATENCY_MS) as (settings, sim, instance, accounts):
        sync_account_partitions(instance, [a["account_key"] for a in accounts])
        order = list(instance.get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME))
        job = import_job(settings)
        history = group_range_tags(order, HISTORY_FIRST, HISTORY_LAST)
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
        print(f"daily import, yesterday + {settings.lookback_days}-day look-back, {LATENCY_MS} ms per bank call, "
              "SQLite app DB and Dagster storage, runs in-process one after another:")
        for label, (n, runs, calls, wall, fetch) in figures.items():
            per_account = wall / n
            print(f"  {label:<24} {n:>3} accounts: {runs:>3} runs, {calls} Data API calls, wall {wall:.1f}s, "
                  f"fetch steps {fetch:.1f}s ({per_account:.2f}s per account; {POPULATION:,} accounts "
                  f"≈ {per_account * POPULATION / 60:.0f} min)")


def run(args) -> None:
    mode = os.environ.get("DAILY_SCALE_MODE", "daemon").lower()
    if mode not in ("daemon", "in-process"):
        raise SystemExit(f"DAILY_SCALE_MODE must be daemon or in-process, got {mode!r}")
    os.environ.setdefault(POSTGRES_ENV, DEFAULT_POSTGRES)  # the server the tests use (docs/running.md)
    with clock.pinned(TODAY):
        (_run_daemon if mode == "daemon" else _run_in_process)(args)
