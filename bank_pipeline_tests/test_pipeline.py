"""End to end through Dagster against the simulator, on SQLite and PostgreSQL.

The ledger must hold exactly the simulator's booked transactions for the window, whatever
happens: reruns, overlapping windows, pending → booked, injected faults, a killed process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from bank_pipeline.db.schema import (
    pending_transactions,
    quarantine,
    raw_fetches,
    raw_transactions,
    transactions,
)
from bank_pipeline_tests.fixtures.pipeline import TODAY, expected_totals

pytestmark = pytest.mark.slow

# Two weeks: enough for coalescing, overlaps and faults; every extra day costs five Dagster
# materializations per account.
FIRST, LAST = TODAY - dt.timedelta(days=14), TODAY - dt.timedelta(days=1)


def _no_limits():
    from bank_pipeline.simulator import FaultConfig, SimulatorConfig

    return SimulatorConfig(seed=42, today=TODAY, faults=FaultConfig(unattended_limit=None))


def test_backfill_loads_exactly_the_simulators_booked_transactions(pipeline_factory):
    pipe = pipeline_factory("alice", _no_limits(), unattended_daily_budget=1000)
    outcomes = pipe.run(FIRST, LAST)

    assert pipe.ledger_totals(FIRST, LAST) == expected_totals(pipe.truth(FIRST, LAST))
    # Coalesced: one run per account, one transactions call per account for 14 days (+ pending).
    assert len(outcomes) == len(pipe.keys)
    for outcome in outcomes:
        assert outcome.metadata["fetched_transactions"]["api_calls"] <= 2
    assert all(o.metadata["enriched_transactions"]["enriched"] >= 0 for o in outcomes)
    # Each partition's materialization carries its own figures beside the run's totals.
    import dagster as dg

    from bank_pipeline.orchestration.partitions import partition_key

    account = next(a for a in pipe.accounts if a["account_type"] == "TRANSACTION")
    day = FIRST + dt.timedelta(days=3)
    records = pipe.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("fetched_transactions"),
                              asset_partitions=[partition_key(account["account_key"], day)]),
        limit=1,
    ).records
    own = records[0].asset_materialization.metadata
    bank_rows = pipe.truth(day, day).get(account["provider_account_id"], {"count": 0})["count"]
    assert own["raw_rows"].value == bank_rows and "run_partitions" in own

    # The same backfill again adds nothing.
    before = pipe.count(transactions)
    pipe.run(FIRST, LAST)
    assert pipe.count(transactions) == before


def test_overlapping_windows_add_nothing_twice(pipeline_factory):
    pipe = pipeline_factory("alice", _no_limits(), unattended_daily_budget=1000)
    middle = FIRST + dt.timedelta(days=7)
    pipe.run(FIRST, middle)
    pipe.run(middle - dt.timedelta(days=7), LAST)
    assert pipe.ledger_totals(FIRST, LAST) == expected_totals(pipe.truth(FIRST, LAST))


@pytest.mark.date_sensitive
def test_pending_then_booked_leaves_one_row(pipeline_factory):
    # Only the bank's clock moves: the second run asks it again for days it answered "just now".
    pipe = pipeline_factory("alice", _no_limits(), unattended_daily_budget=1000, refetch_after_hours=0)
    pipe.run(TODAY - dt.timedelta(days=10), TODAY)
    with pipe.engine.connect() as conn:
        pending_before = conn.execute(sa.select(pending_transactions)).all()
    assert pending_before, "the simulator should have pending transactions in the last days"

    # A week later the pending transactions have booked, under new transaction ids.
    later = TODAY + dt.timedelta(days=7)
    pipe.sim_admin("POST", "clock", json={"today": later.isoformat()})
    pipe.run(TODAY - dt.timedelta(days=10), later)

    truth = expected_totals(pipe.truth(TODAY - dt.timedelta(days=10), later))
    assert pipe.ledger_totals(TODAY - dt.timedelta(days=10), later) == truth
    with pipe.engine.connect() as conn:
        still_pending = {r.transaction_id for r in conn.execute(sa.select(pending_transactions))}
    assert not {r.transaction_id for r in pending_before} & still_pending


def test_injected_429_and_5xx_still_load_everything(pipeline_factory):
    from bank_pipeline.simulator import FaultConfig, SimulatorConfig

    faults = FaultConfig(
        unattended_limit=None, rate_limit_every=3, retry_after=0, server_error_count=2
    )
    pipe = pipeline_factory("alice", SimulatorConfig(seed=42, today=TODAY, faults=faults), unattended_daily_budget=1000)
    pipe.run(FIRST, LAST)
    assert pipe.ledger_totals(FIRST, LAST) == expected_totals(pipe.truth(FIRST, LAST))
    stats = pipe.sim_admin("GET", "stats").json()
    assert json.dumps(stats)  # the simulator counted the failed attempts too


def test_malformed_rows_are_quarantined_with_reasons(pipeline_factory):
    from bank_pipeline.simulator import FaultConfig, SimulatorConfig

    faults = FaultConfig(
        unattended_limit=None, malformed_count=2, malformed_kinds=["missing_field", "bad_timestamp", "string_amount"]
    )
    pipe = pipeline_factory("alice", SimulatorConfig(seed=42, today=TODAY, faults=faults), unattended_daily_budget=1000)
    pipe.run(FIRST, LAST)
    with pipe.engine.connect() as conn:
        rows = conn.execute(
            sa.select(quarantine.c.reason, quarantine.c.payload)
            .join(raw_transactions, raw_transactions.c.id == quarantine.c.raw_transaction_id)
            .where(raw_transactions.c.status == "booked")
        ).all()
    assert rows, "malformed rows should be quarantined"
    for reason, payload in rows:
        assert reason and len(reason) > 10
        json.loads(payload)  # what TrueLayer sent is kept
    # Everything that was well-formed is loaded; the quarantined rows are exactly what is missing.
    truth = expected_totals(pipe.truth(FIRST, LAST))
    loaded = pipe.ledger_totals(FIRST, LAST)
    assert sum(c for c, _ in truth.values()) - sum(c for c, _ in loaded.values()) == len(rows)


def test_a_killed_run_then_a_rerun_equals_a_clean_run(pipeline_factory, db_url, tmp_path):
    from bank_pipeline.simulator import FaultConfig, SimulatorConfig

    # Slow calls so the process can be killed mid-run, after something has landed.
    faults = FaultConfig(unattended_limit=None, latency_ms=700)
    pipe = pipeline_factory("alice", SimulatorConfig(seed=42, today=TODAY, faults=faults),
                            unattended_daily_budget=1000, max_window_days=10)
    current = next(a for a in pipe.accounts if a["account_type"] == "TRANSACTION")
    first = TODAY - dt.timedelta(days=50)  # five bank windows of 10 days
    env = dict(os.environ)
    env.update(
        BANK_PIPELINE_DATABASE_URL=db_url,
        TRUELAYER_AUTH_URL=pipe.sim.auth_url,
        TRUELAYER_DATA_URL=pipe.sim.data_url,
        BANK_PIPELINE_HOME=str(pipe.settings.home),
        BANK_PIPELINE_FERNET_KEYS=",".join(pipe.settings.fernet_keys),
        BANK_PIPELINE_MAX_WINDOW_DAYS="10",
        BANK_PIPELINE_UNATTENDED_DAILY_BUDGET="1000",
        DAGSTER_HOME=str(tmp_path / "dagster-crash"),
    )
    os.makedirs(env["DAGSTER_HOME"], exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bank_pipeline.cli", "import", "--account", current["account_key"],
         "--from", first.isoformat(), "--to", LAST.isoformat()],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and pipe.count(raw_fetches) < 3:
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert pipe.count(raw_fetches) >= 3

    pipe.sim_admin("POST", "faults", json={"latency_ms": 0})
    pipe.run(first, LAST, [current["account_key"]])
    pid = current["provider_account_id"]
    assert pipe.ledger_totals(first, LAST)[pid] == expected_totals(pipe.truth(first, LAST))[pid]

    # A clean run into a fresh database gives the same table.
    from bank_pipeline.db import make_engine, migrate
    from bank_pipeline_tests.fixtures.pipeline import Pipeline, settings_for

    clean_url = f"sqlite:///{tmp_path / 'clean.db'}"
    migrate(make_engine(clean_url))
    clean = Pipeline(settings_for(clean_url, pipe.sim, tmp_path / "clean-home", unattended_daily_budget=1000),
                     pipe.sim, pipe.instance, "alice")
    clean.run(first, LAST, [current["account_key"]])
    assert pipe.ledger_rows() == clean.ledger_rows()


@pytest.mark.date_sensitive
def test_the_daily_schedules_runs_load_their_window_and_a_rerun_adds_nothing(pipeline_factory):
    from bank_pipeline.orchestration.schedules import daily_run_requests
    from bank_pipeline.runner import import_job

    pipe = pipeline_factory("alice", _no_limits(), unattended_daily_budget=1000, lookback_days=3)
    pipe.run(FIRST, TODAY - dt.timedelta(days=4))  # history up to the day before the look-back window
    tick = dt.datetime(2026, 11, 21, 6, 0, tzinfo=dt.timezone.utc)  # the last complete day is TODAY
    # Runs of two accounts (a group, then one alone), their bank calls made on threads.
    order = list(pipe.instance.get_dynamic_partitions("accounts"))
    requests = daily_run_requests(order, tick, pipe.settings.timezone, pipe.settings.lookback_days, accounts_per_run=2)
    assert [len(r.tags.get("bank_pipeline/accounts", "x").split(",")) for r in requests] == [2, 1]
    job = import_job(pipe.settings)
    counts = []
    for _ in range(2):  # the tick, then the same tick again
        for request in requests:
            assert job.execute_in_process(instance=pipe.instance, tags=request.tags).success
        assert pipe.ledger_totals(FIRST, TODAY) == expected_totals(pipe.truth(FIRST, TODAY))
        counts.append(pipe.count(transactions))
    assert counts[0] == counts[1]
