"""History that always lands, with the bank's limits ON (4 unattended calls a day, SCA window):
history at connect time, replay of landed days, budget-starved backfills that resume, and
per-account failures that show as failed partitions in the Dagster instance.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa

from bank_pipeline.db.schema import raw_fetches, transactions
from bank_pipeline_tests.fixtures.pipeline import TODAY, expected_totals

pytestmark = pytest.mark.slow

YESTERDAY = TODAY - dt.timedelta(days=1)
# The year-long case runs on the embedded default (SQLite app database); the PostgreSQL app
# database goes through the same code in the shorter cases below and in test_pipeline.py.
EMBEDDED_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _bank_rules(**extra):
    from bank_pipeline.simulator import FaultConfig, SimulatorConfig

    return SimulatorConfig(seed=42, today=TODAY, faults=FaultConfig(**{"unattended_limit": 4, "sca_window_minutes": 5, **extra}))


def _unattended_calls(pipe) -> int:
    stats = pipe.sim_admin("GET", "stats").json()
    return sum(n for days in stats["unattended"].values() for n in days.values())


def _move_to(pipe, move_clock, day: dt.date) -> None:
    """Both clocks (the bank's and the pipeline's) to noon of `day`."""
    pipe.sim_admin("POST", "clock", json={"today": day.isoformat()})
    move_clock(day)


@EMBEDDED_ONLY
def test_a_year_of_history_lands_at_connect_a_backfill_over_it_calls_nothing_and_the_next_day_works(
    pipeline_factory, move_clock
):
    """One year-long history serves three cases (landing a year is the costly part)."""
    from bank_pipeline.history import history_window, import_history, land_history
    from bank_pipeline.orchestration.partitions import SCHEDULE_TAG

    # Connect: a year, four times the 90 days TrueLayer serves without a fresh SCA.
    pipe = pipeline_factory("alice", _bank_rules(), history_days=365)
    window = history_window(pipe.settings)
    assert window.days == 365 and window.last == TODAY

    land_history(pipe.settings, pipe.connection.connection_id, pipe.accounts, window, out=lambda _: None)
    outcomes = import_history(pipe.instance, pipe.settings, pipe.keys, window, progress=None)
    assert all(o.success for o in outcomes), [o.error for o in outcomes]
    assert len(outcomes) == len(pipe.keys)  # one run per account: nothing to fetch, so no need to cut

    booked_to = YESTERDAY  # today's booked rows may still grow
    assert pipe.ledger_totals(window.first, booked_to) == expected_totals(pipe.truth(window.first, booked_to))
    assert _unattended_calls(pipe) == 0, "history is fetched while the user is there, not from the budget"
    assert all(o.metadata["fetched_transactions"]["api_calls"] == 0 for o in outcomes)

    # A backfill over the year's settled days (older than the look-back window), cut as a UI
    # backfill is: replayed from the raw store, no bank call, nothing changed.
    before_rows, before_fetches = pipe.ledger_rows(), pipe.count(raw_fetches)
    calls_before = pipe.sim_admin("GET", "stats").json()["data_api_calls"]
    last = TODAY - dt.timedelta(days=10)
    days = (last - window.first).days + 1
    replayed = pipe.run(window.first, last)
    assert len(replayed) == len(pipe.keys) * 4  # 355 days: runs of at most 90 days per account
    assert pipe.sim_admin("GET", "stats").json()["data_api_calls"] == calls_before
    assert pipe.ledger_rows() == before_rows and pipe.count(raw_fetches) == before_fetches
    assert sum(o.metadata["fetched_transactions"]["replayed_days"] for o in replayed) == days * len(pipe.keys)

    # The next day, the scheduled import (yesterday + look-back) works within the 4-a-day rule.
    _move_to(pipe, move_clock, TODAY + dt.timedelta(days=1))
    first = TODAY - dt.timedelta(days=pipe.settings.lookback_days)
    scheduled = pipe.run(first, TODAY, extra_tags={SCHEDULE_TAG: "daily_import_schedule"})
    assert all(o.metadata["fetched_transactions"]["api_calls"] >= 1 for o in scheduled)
    assert pipe.ledger_totals(window.first, TODAY) == expected_totals(pipe.truth(window.first, TODAY))
    stats = pipe.sim_admin("GET", "stats").json()
    assert "429" not in {str(s) for s in stats.get("statuses", {})}


@pytest.mark.date_sensitive
@EMBEDDED_ONLY
def test_a_budget_starved_backfill_lands_what_it_fetched_keeps_the_reserve_and_resumes(pipeline_factory, move_clock):
    # 30-day bank windows, so that three windows stay inside the 90 days TrueLayer serves without
    # a fresh SCA (older data cannot be fetched unattended at all: that is what connect is for).
    pipe = pipeline_factory("alice", _bank_rules(), unattended_daily_budget=4, backfill_reserve=2, max_window_days=30)
    key = next(a["account_key"] for a in pipe.accounts if a["account_type"] == "TRANSACTION")
    account_id = next(a["id"] for a in pipe.accounts if a["account_key"] == key)
    first, last = TODAY - dt.timedelta(days=85), TODAY - dt.timedelta(days=10)  # 76 days: 3 runs

    outcomes = pipe.run(first, last, [key], require_success=False)
    landed = [o for o in outcomes if o.success]
    deferred = [o for o in outcomes if not o.success]
    assert len(landed) == 2 and len(deferred) == 1, "2 unattended calls for backfills, 2 kept for the daily import"
    assert "deferred" in deferred[0].error and "00:00 UTC" in deferred[0].error
    for o in landed:  # what was fetched went all the way to the ledger
        account = pipe.truth(o.first, o.last)[pipe.provider_id(key)]
        assert pipe.ledger_totals(o.first, o.last)[pipe.provider_id(key)] == expected_totals({"a": account})["a"]
    from bank_pipeline.limits import UnattendedBudget

    assert UnattendedBudget(pipe.engine, 4).used(account_id) == 2  # the daily import's 2 are untouched
    _assert_partitions(pipe, key, deferred[0].first, deferred[0].last, dg.AssetPartitionStatus.FAILED)

    # After midnight the backfill is resumed: only what is missing is fetched.
    _move_to(pipe, move_clock, TODAY + dt.timedelta(days=1))
    resumed = pipe.run(first, last, [key])
    assert sum(o.metadata["fetched_transactions"]["api_calls"] for o in resumed) == 1
    truth = pipe.truth(first, last)[pipe.provider_id(key)]
    assert pipe.ledger_totals(first, last)[pipe.provider_id(key)] == expected_totals({"a": truth})["a"]
    with pipe.engine.connect() as conn:
        windows = conn.execute(
            sa.select(raw_fetches.c.window_from, raw_fetches.c.window_to).where(
                raw_fetches.c.account_id == account_id, raw_fetches.c.kind == "booked", raw_fetches.c.error.is_(None)
            )
        ).all()
    assert len(windows) == len(set(windows)) == 3, "no window fetched twice"
    _assert_partitions(pipe, key, first, last, dg.AssetPartitionStatus.MATERIALIZED)


def test_every_attempt_that_reaches_the_bank_is_reserved(pipeline_factory):
    pipe = pipeline_factory("alice", _bank_rules(), unattended_daily_budget=4, backfill_reserve=0)
    key = next(a["account_key"] for a in pipe.accounts if a["account_type"] == "TRANSACTION")
    # After connecting, the bank answers the next 3 requests with 5xx: the client retries, and each
    # attempt is reserved before it is sent, so the pending call (a 5th) is never made.
    pipe.sim_admin("POST", "faults", json={**pipe.sim_admin("GET", "faults").json()["faults"], "server_error_count": 3})
    outcomes = pipe.run(TODAY - dt.timedelta(days=40), YESTERDAY, [key], require_success=False)
    assert not outcomes[0].success and "budget" in outcomes[0].error and "deferred pending" in outcomes[0].error
    stats = pipe.sim_admin("GET", "stats").json()
    assert max(n for days in stats["unattended"].values() for n in days.values()) <= 4
    assert "429" not in {str(s) for s in stats.get("statuses", {})}, "the bank never had to refuse a call"


def test_a_per_account_failure_in_a_multi_account_run_marks_its_partitions_failed(pipeline_factory):
    from bank_pipeline.db.schema import api_call_budget
    from bank_pipeline.orchestration.partitions import (
        RANGE_END_TAG,
        RANGE_START_TAG,
        partition_key,
        sync_account_partitions,
    )
    from bank_pipeline.runner import import_job

    pipe = pipeline_factory("alice", _bank_rules(), unattended_daily_budget=4, backfill_reserve=0)
    fine, starved = pipe.keys[0], pipe.keys[1]
    starved_id = next(a["id"] for a in pipe.accounts if a["account_key"] == starved)
    with pipe.engine.begin() as conn:  # the second account spent today's unattended calls already
        conn.execute(api_call_budget.insert().values(account_id=starved_id, day=TODAY, unattended_calls=4))
    sync_account_partitions(pipe.instance, pipe.keys)
    first, last = TODAY - dt.timedelta(days=20), TODAY - dt.timedelta(days=15)
    # A key range over two accounts is the rectangle (both accounts) × (the days): one run.
    tags = {RANGE_START_TAG: partition_key(fine, first), RANGE_END_TAG: partition_key(starved, last)}
    result = import_job(pipe.settings).execute_in_process(instance=pipe.instance, tags=tags, raise_on_error=False)

    assert not result.success
    _assert_partitions(pipe, starved, first, last, dg.AssetPartitionStatus.FAILED)
    # The account that did not fail is not shown as materialized either: nothing hides the failure.
    _assert_partitions(pipe, fine, first, last, dg.AssetPartitionStatus.FAILED)
    with pipe.engine.connect() as conn:
        reason = conn.execute(
            sa.text("select last_failure_message from accounts where account_key = :k"), {"k": starved}
        ).scalar_one()
    assert "budget" in reason and "deferred" in reason
    assert pipe.count(transactions) == 0


def _assert_partitions(pipe, key: str, first: dt.date, last: dt.date, status) -> None:
    from bank_pipeline.orchestration.assets import transaction_assets
    from bank_pipeline.orchestration.partitions import partition_key, transaction_partitions

    keys = [partition_key(key, first + dt.timedelta(days=n)) for n in range((last - first).days + 1)]
    for asset in transaction_assets:
        statuses = pipe.instance.get_status_by_partition(asset.key, keys, transaction_partitions)
        assert set(statuses.values()) == {status}, (asset.key.to_user_string(), set(statuses.values()))


@pytest.fixture
def dagster_instance(postgres_dagster_instance):
    """A year of account-days is ~10k Dagster events: dagster-postgres batches them."""
    return postgres_dagster_instance


def _check_statuses(pipe, keys: list[str]) -> dict[str, dict[str, str]]:
    """Each ledger check's status per partition, as the UI's asset-check partition view reads it."""
    from dagster._core.definitions.partitions.context import partition_loading_context

    from bank_pipeline.orchestration.checks import ledger_checks
    from bank_pipeline.orchestration.partitions import transaction_partitions

    out: dict[str, dict[str, str]] = {}
    for check in ledger_checks:
        check_key = check.check_key
        with partition_loading_context(dynamic_partitions_store=pipe.instance):
            state = pipe.instance.event_log_storage.get_asset_check_state([(check_key, transaction_partitions)])[check_key]
        by_partition = {}
        for status, subset in state.subsets.items():
            for key in set(subset.subset_value.get_partition_keys()) & set(keys):
                by_partition[key] = status.value
        out[check_key.name] = by_partition
    return out


def _latest_check_executions(pipe) -> dict[str, tuple]:
    """Each ledger check's latest execution and its status, as the UI's check summary resolves it."""
    from dagster._core.loader import LoadingContextForTest

    from bank_pipeline.orchestration.checks import ledger_checks

    records = pipe.instance.event_log_storage.get_latest_asset_check_execution_by_key([c.check_key for c in ledger_checks])
    context = LoadingContextForTest(pipe.instance)
    return {key.name: (record, asyncio.run(record.resolve_status(context)).value) for key, record in records.items()}


def test_checks_of_a_run_that_failed_before_them_show_the_ledger_not_the_failure(pipeline_factory):
    """Dagster shows a planned check of a failed run as "Execution failed" (red): a run that fails
    at fetch is followed by the checks alone over its partitions (failures in plain sight)."""
    from bank_pipeline.orchestration.checks import (
        CHECKS_AFTER_TAG,
        LEDGER_CHECKS_JOB_NAME,
        checks_after_failure,
    )
    from bank_pipeline.orchestration.partitions import partition_key

    # A run outside the schedule may spend 2 of the 4 unattended calls a day: the first run spends
    # them, and the second asks the bank again for the same days (refetch_after_hours=0).
    pipe = pipeline_factory("alice", _bank_rules(), unattended_daily_budget=4, backfill_reserve=2, refetch_after_hours=0)
    key = pipe.keys[0]
    first, last = TODAY - dt.timedelta(days=3), YESTERDAY
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    keys = [partition_key(key, day) for day in days]
    [landed] = pipe.run(first, last, [key])
    assert checks_after_failure(pipe.instance, pipe.instance.get_run_by_id(landed.run_id)) is None
    before = pipe.ledger_rows()

    [failed] = pipe.run(first, last, [key], require_success=False)

    assert not failed.success and "deferred" in failed.error
    # The failed run planned its checks and never ran them.
    planned = pipe.instance.get_records_for_run(
        failed.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED).records
    ran = pipe.instance.get_records_for_run(failed.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    assert planned and not ran
    # The checks alone ran after it, over its partitions, and passed on what the ledger holds.
    [checks_run] = pipe.instance.get_runs(dg.RunsFilter(tags={CHECKS_AFTER_TAG: failed.run_id}))
    assert checks_run.job_name == LEDGER_CHECKS_JOB_NAME and checks_run.status == dg.DagsterRunStatus.SUCCESS
    latest = _latest_check_executions(pipe)
    assert {name: (record.run_id, status) for name, (record, status) in latest.items()} == dict.fromkeys(
        ("no_duplicate_transactions", "running_balances_continuous", "quarantine_explained"),
        (checks_run.run_id, "SUCCEEDED"),
    )
    # Each partition has its own result, not Dagster's "Execution failed" (nor "Skipped").
    statuses = _check_statuses(pipe, keys)
    assert statuses == {name: dict.fromkeys(keys, "SUCCEEDED") for name in latest}, statuses
    # The days were in the ledger before the failed run: they stay materialized (a landed day never
    # turns red), and nothing landed twice.
    _assert_partitions(pipe, key, first, last, dg.AssetPartitionStatus.MATERIALIZED)
    assert pipe.ledger_rows() == before
    # A `ledger_checks` run is never followed by another one.
    assert checks_after_failure(pipe.instance, checks_run) is None


@EMBEDDED_ONLY
def test_a_look_back_day_the_bank_answered_for_minutes_ago_is_not_asked_again(pipeline_factory):
    """A backfill right after connect (or the demo) must not spend the day's unattended calls on
    days the bank has just served; a webhook's run asks anyway, and so does every run when
    BANK_PIPELINE_REFETCH_AFTER_HOURS is 0."""
    from bank_pipeline.orchestration.partitions import SENSOR_TAG

    # Room for the three runs that do ask (each a booked window and the pending set).
    pipe = pipeline_factory("alice", _bank_rules(unattended_limit=8), unattended_daily_budget=8, backfill_reserve=0)
    key = next(a["account_key"] for a in pipe.accounts if a["account_type"] == "TRANSACTION")
    first = YESTERDAY - dt.timedelta(days=pipe.settings.lookback_days - 1)  # inside the look-back window

    def calls(outcomes) -> int:
        return sum(o.metadata["fetched_transactions"]["api_calls"] for o in outcomes)

    assert calls(pipe.run(first, YESTERDAY, [key])) >= 1  # never fetched: the bank
    again = pipe.run(first, YESTERDAY, [key])
    assert calls(again) == 0 and again[0].metadata["fetched_transactions"]["replayed_days"] == pipe.settings.lookback_days
    assert calls(pipe.run(first, YESTERDAY, [key], extra_tags={SENSOR_TAG: "webhook_events_sensor"})) >= 1
    truth = pipe.truth(first, YESTERDAY)[pipe.provider_id(key)]
    assert pipe.ledger_totals(first, YESTERDAY)[pipe.provider_id(key)] == expected_totals({"a": truth})["a"]

    import dataclasses

    pipe.settings = dataclasses.replace(pipe.settings, refetch_after_hours=0)
    assert calls(pipe.run(first, YESTERDAY, [key])) >= 1
