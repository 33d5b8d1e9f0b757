"""A backfill as a user launches it from the Dagster UI, against Dagster's own floor.

`dagster-webserver` + `dagster-daemon run` on a fresh instance (SQLite storage, then
dagster-postgres), the repository's dagster.yaml and workspace plus a second, bench-only code
location (`_trivial_location`: five trivial assets with the same partitioning, backfill policy
and executor). A simulator user is connected first with the bank's limits on (4 unattended
calls a day, 100 ms per call); then `launchPartitionBackfill` over GraphQL for the transaction
assets, and the same partitions for the trivial assets. Printed per case: wall time, runs,
time to first run, the runs' span (first run started -> last run ended, free of the daemon's
30 s tick phase), Data API calls, and the ratio project / trivial on wall time and on span.

If connecting does not import the history (so a year cannot land within the bank's limits),
the bench says so and runs with the limits off (simulator `unattended_limit=None`, app budget
100000), as `pipeline_backfill` does.

Environment: UI_BACKFILL_BANK_LIMITS ("auto" (default), "on", "off"), UI_BACKFILL_STORAGES (default "sqlite,postgres"), UI_BACKFILL_CASES (default
"365x5,60x3"; `--quick` runs 60x3 only), UI_BACKFILL_SIDES (default "trivial,project"). Each case starts its own webserver + daemon.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from bank_pipeline import clock
from bank_pipeline.db import make_engine, migrate
from bank_pipeline.db.schema import accounts, transactions
from bank_pipeline.orchestration.partitions import partition_key, sync_account_partitions
from bank_pipeline.simulator import FaultConfig, SimulatorConfig, run_in_thread
from bank_pipeline_tests.bench._trivial_location import PREFIX
from bank_pipeline_tests.dagster_graphql_client import TRANSACTION_ASSETS, BackfillResult, DagsterGraphQL
from bank_pipeline_tests.dagster_services import dagster_services, postgres_dagster_database
from bank_pipeline_tests.fixtures.pipeline import settings_for
from bank_pipeline_tests.user_cli import connect_user

TODAY = dt.date(2026, 11, 20)
LATENCY_MS = 100
TRIVIAL_MODULE = "bank_pipeline_tests.bench._trivial_location"
TRIVIAL_ASSETS = tuple(f"{PREFIX}/{name}" for name in TRANSACTION_ASSETS)
BACKFILL_TIMEOUT = 1800
TODAY_112S = 112.0  # the 60-day x 3-account backfill through the daemon, before connect imported the history


@dataclasses.dataclass
class Case:
    days: int
    accounts: int

    @property
    def user(self) -> str:
        return f"multi-{self.accounts}"

    @classmethod
    def parse(cls, text: str) -> Case:
        days, _, accounts = text.strip().partition("x")
        return cls(int(days), int(accounts))


def _cases(args) -> list[Case]:
    default = "60x3" if args.quick else "365x5,60x3"
    return [Case.parse(c) for c in os.environ.get("UI_BACKFILL_CASES", default).split(",") if c.strip()]


def _storages() -> list[str]:
    return [s.strip() for s in os.environ.get("UI_BACKFILL_STORAGES", "sqlite,postgres").split(",") if s.strip()]


def _sides() -> list[str]:
    sides = [s.strip() for s in os.environ.get("UI_BACKFILL_SIDES", "trivial,project").split(",") if s.strip()]
    unknown = set(sides) - {"trivial", "project"}
    if unknown:
        raise SystemExit(f"UI_BACKFILL_SIDES: unknown side(s) {sorted(unknown)}; use trivial and/or project")
    return sides


def _describe(label: str, result: BackfillResult, calls: int | None = None) -> str:
    first = f"{result.time_to_first_run:.1f}s" if result.time_to_first_run is not None else "-"
    started = f"{result.time_to_first_start:.1f}s" if result.time_to_first_start is not None else "-"
    span = f"{result.runs_span:.1f}s" if result.runs_span is not None else "-"
    landed = f"{result.time_to_last_end:.1f}s" if result.time_to_last_end is not None else "-"
    text = (f"    {label:<8} wall {result.wall_seconds:6.1f}s  runs {len(result.runs):3d} {result.run_statuses}  "
            f"first run created {first}, started {started}, runs span {span}, last run ended {landed}  "
            f"status {result.status}")
    if calls is not None:
        text += f"  Data API calls {calls}"
    return text


@contextlib.contextmanager
def _storage(kind: str):
    if kind == "postgres":
        with postgres_dagster_database() as block:
            yield block
    else:
        yield None


def _history_landed(engine, first: dt.date, last: dt.date) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(transactions).where(transactions.c.booking_date.between(first, last))
        ).scalar_one()


def _run_case(case: Case, storage: str, limits: bool) -> bool | None:
    """One case; returns False if limits were on but connecting imported no history (rerun without)."""
    last = TODAY - dt.timedelta(days=1)
    first = last - dt.timedelta(days=case.days - 1)
    faults = FaultConfig(unattended_limit=4 if limits else None, sca_window_minutes=5 if limits else None,
                         latency_ms=LATENCY_MS)
    with tempfile.TemporaryDirectory() as tmp, _storage(storage) as storage_block:
        tmp_path = Path(tmp)
        db_url = f"sqlite:///{tmp_path / 'app.db'}"
        migrate(make_engine(db_url))
        with run_in_thread(SimulatorConfig(seed=42, today=TODAY, faults=faults)) as sim:
            settings = settings_for(db_url, sim, tmp_path / "home")
            if not limits:
                settings = dataclasses.replace(settings, unattended_daily_budget=100_000)
            started = time.perf_counter()
            with dagster_services(settings, tmp_path, storage=storage_block, extra_modules=(TRIVIAL_MODULE,)) as services:
                print(f"  webserver + daemon ready in {time.perf_counter() - started:.1f}s", flush=True)
                gql = DagsterGraphQL(services.url)
                started = time.perf_counter()
                # As a user: `bank-pipeline connect` (history into the instance the UI shows).
                history = case.days + 1 if "project" in _sides() else 0  # the floor needs only the accounts
                connect_user(settings, case.user, dagster_home=services.dagster_home, history_days=history)
                engine = make_engine(db_url)
                with engine.connect() as conn:
                    keys = sorted(conn.execute(sa.select(accounts.c.account_key)).scalars())[: case.accounts]
                with services.instance() as instance:
                    sync_account_partitions(instance, keys)
                gql.wait_until_idle(timeout=BACKFILL_TIMEOUT, settle=5, alive=services.check_alive)
                landed = _history_landed(engine, first, last)
                stats = httpx.get(f"{sim.base_url}/_sim/stats", timeout=30).json()
                print(f"  connect {case.user} ({len(keys)} accounts): {time.perf_counter() - started:.1f}s, "
                      f"{landed} transactions of the range landed, Data API calls {stats['data_api_calls']} "
                      f"(attended {sum(stats['attended'].values())})", flush=True)
                if limits and landed == 0 and history:
                    return False
                partition_keys = [partition_key(k, first + dt.timedelta(days=i)) for k in keys for i in range(case.days)]
                print(f"  backfill {case.days} days x {len(keys)} accounts = {len(partition_keys)} partitions, "
                      f"{LATENCY_MS} ms per bank call, bank limits {'ON' if limits else 'OFF'}", flush=True)
                results = {}
                # Dagster's backfill daemon looks at backfills every 30 s. Each side is launched just
                # after a tick (the one that saw the previous backfill finish), so both wait the same
                # for their first run; a one-partition trivial backfill sets the phase for the first.
                gql.run_backfill(TRIVIAL_ASSETS, partition_keys[:1], timeout=BACKFILL_TIMEOUT, alive=services.check_alive)
                for side in _sides():  # the floor first: if time runs out, it is printed already
                    if side == "trivial":
                        results[side] = gql.run_backfill(TRIVIAL_ASSETS, partition_keys, timeout=BACKFILL_TIMEOUT,
                                                         alive=services.check_alive)
                        print(_describe("trivial", results[side]), flush=True)
                        continue
                    httpx.post(f"{sim.base_url}/_sim/stats/reset", timeout=30).raise_for_status()
                    results[side] = gql.run_backfill(TRANSACTION_ASSETS, partition_keys, timeout=BACKFILL_TIMEOUT,
                                                     alive=services.check_alive)
                    calls = httpx.get(f"{sim.base_url}/_sim/stats", timeout=30).json()["data_api_calls"]
                    print(_describe("project", results[side], calls)
                          + f"  ledger: {_history_landed(engine, first, last)} transactions in the range", flush=True)
                    for failed in (r for r in results[side].runs if r.status == "FAILURE"):
                        print(f"    run {failed.run_id[:8]} failed: " + " | ".join(gql.failure_reasons(failed.run_id))[:600],
                              flush=True)
                    if (case.days, case.accounts) == (60, 3):
                        landed = results[side].time_to_last_end
                        print(f"    vs 112 s before connect imported the history: {TODAY_112S / results[side].wall_seconds:.1f}x faster "
                              f"on wall, {TODAY_112S / landed:.1f}x to the last run's end (the data landed; the "
                              "backfill is marked complete at the daemon's next 30 s tick) (target >= 3x)", flush=True)
                if len(results) == 2:
                    ratio = results["project"].wall_seconds / results["trivial"].wall_seconds
                    print(f"    ratio project / trivial: {ratio:.2f} on wall time (target <= 1.5)", flush=True)
                    spans = results["project"].runs_span, results["trivial"].runs_span
                    if all(spans):
                        print(f"    ratio project / trivial: {spans[0] / spans[1]:.2f} on runs span "
                              "(first run started -> last run ended; no daemon tick phase)", flush=True)
                return True


def run(args) -> None:
    with clock.pinned(TODAY):
        _run_all(args)


def _run_all(args) -> None:
    limits: bool | None = None  # unknown until a connect shows whether history lands at connect time
    choice = os.environ.get("UI_BACKFILL_BANK_LIMITS", "auto").lower()
    if choice in ("on", "off"):
        limits = choice == "on"
        print(f"bank limits forced {choice.upper()} (UI_BACKFILL_BANK_LIMITS)")
    for storage in _storages():
        print(f"\n--- Dagster instance storage: {storage}", flush=True)
        for case in _cases(args):
            print(f"\n  case {case.days} days x {case.accounts} accounts ({case.user})", flush=True)
            if limits is not False:
                if _run_case(case, storage, limits=True):
                    limits = True
                    continue
                if choice == "on":
                    print("  connecting imported no history: the backfill cannot land within the bank's limits")
                    continue
                limits = False
                print("  connecting imported no history (this checkout has no connect-time import): "
                      "this and later cases run with the bank's limits OFF", flush=True)
            _run_case(case, storage, limits=False)
