"""Dagster wiring: partition keys, the daily schedule's windows, the sensors' decisions."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa

from bank_pipeline import clock
from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import accounts, connections
from bank_pipeline.orchestration.partitions import (
    ACCOUNT_TAG,
    ACCOUNTS_PARTITIONS_NAME,
    ACCOUNTS_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    account_keys_from_tags,
    days_by_account,
    partition_key,
    range_tags,
    sync_account_partitions,
    transaction_partitions,
)
from bank_pipeline.orchestration.resources import AppDatabase, default_resources
from bank_pipeline_tests.fixtures.clock import TODAY


def _truelayer() -> dict:
    """The `truelayer` resource the schedule and sensors read, from this test's environment."""
    return {"truelayer": default_resources()["truelayer"]}


def _add_accounts(engine, keys: list[str]) -> None:
    now = utcnow()
    with engine.begin() as conn:
        cid = conn.execute(
            connections.insert().values(status="active", created_at=now, updated_at=now).returning(connections.c.id)
        ).scalar_one()
        for i, key in enumerate(keys):
            conn.execute(
                accounts.insert().values(
                    account_key=key, identity=f"sort:000000:{key}", connection_id=cid, kind="account",
                    provider_account_id=f"prov-{key}", display_name=f"Account {i}", currency="GBP",
                    created_at=now, updated_at=now,
                )
            )


def _partitions_of(tags: dict[str, str], instance) -> set[str]:
    keys = transaction_partitions.get_partition_keys_in_range(
        dg.PartitionKeyRange(tags[RANGE_START_TAG], tags[RANGE_END_TAG]), dynamic_partitions_store=instance
    )
    return set(keys)


def test_partition_keys_group_by_account_and_never_mix_separators():
    keys = [partition_key("abc", dt.date(2026, 1, d)) for d in (3, 1, 2)] + [partition_key("xyz", dt.date(2026, 1, 1))]
    assert days_by_account(keys) == {
        "abc": [dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 1, 3)],
        "xyz": [dt.date(2026, 1, 1)],
    }
    with pytest.raises(ValueError):
        range_tags("abc", dt.date(2026, 1, 2), dt.date(2026, 1, 1))


def test_account_keys_from_run_tags():
    known = ["a1", "a2", "a3", "b1"]
    assert account_keys_from_tags({ACCOUNT_TAG: "a2"}, known) == ["a2"]
    assert account_keys_from_tags({"dagster/partition": "a3|2026-01-01"}, known) == ["a3"]
    tags = {RANGE_START_TAG: "a1|2026-01-01", RANGE_END_TAG: "a3|2026-01-05"}
    assert account_keys_from_tags(tags, known) == ["a1", "a2", "a3"]
    assert account_keys_from_tags({}, known) == []


@pytest.mark.date_sensitive
def test_daily_schedule_requests_yesterday_plus_lookback_for_every_account(monkeypatch):
    from bank_pipeline.orchestration.schedules import daily_import_schedule

    keys = ["acur01", "asav02", "acard3"]
    with dg.instance_for_test() as instance:
        sync_account_partitions(instance, keys)
        # 06:00 London on 21 Nov: the last complete day is the 20th; look-back 3 → 17th..20th. The
        # daemon hands the tick's time on the wall clock.
        tick = clock.to_wall(dt.datetime(2026, 11, 21, 6, 0, tzinfo=dt.timezone.utc))
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick, resources=_truelayer())
        requests = list(daily_import_schedule.evaluate_tick(context).run_requests)
        assert len(requests) == 1  # up to 50 accounts (the default) share a run
        days = [dt.date(2026, 11, d) for d in (17, 18, 19, 20)]
        assert _partitions_of(requests[0].tags, instance) == {partition_key(k, d) for k in keys for d in days}
        order = list(instance.get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME))
        assert requests[0].tags[ACCOUNTS_TAG].split(",") == order and ACCOUNT_TAG not in requests[0].tags
        # Same tick again: same run keys, so Dagster launches nothing twice.
        again = list(daily_import_schedule.evaluate_tick(context).run_requests)
        assert [r.run_key for r in again] == [r.run_key for r in requests]


def test_daily_schedule_reads_the_daemons_wall_clock_tick_on_the_pipelines_clock():
    """The daemon ticks on the real clock; the days a tick imports follow the pipeline's clock
    (BANK_PIPELINE_CLOCK_OFFSET, pinned here to TODAY), as every other process of the deployment."""
    from bank_pipeline.orchestration.schedules import daily_import_schedule

    with dg.instance_for_test() as instance:
        sync_account_partitions(instance, ["acur01"])
        wall_now = dt.datetime.now(dt.timezone.utc)  # what the daemon passes, whatever the real date
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=wall_now, resources=_truelayer())
        (request,) = daily_import_schedule.evaluate_tick(context).run_requests
        yesterday = TODAY - dt.timedelta(days=1)  # the clock reads TODAY 12:00 UTC
        days = [yesterday - dt.timedelta(days=n) for n in range(3, -1, -1)]
        assert _partitions_of(request.tags, instance) == {partition_key("acur01", d) for d in days}


def test_daily_runs_group_accounts_in_partition_order_and_cover_each_once():
    from bank_pipeline.orchestration.schedules import daily_run_requests

    keys = [f"a{i:02d}" for i in (5, 1, 4, 2, 3)]  # partition order is the order added, not sorted
    tick = dt.datetime(2026, 11, 21, 6, 0, tzinfo=dt.timezone.utc)
    days = [dt.date(2026, 11, d) for d in (17, 18, 19, 20)]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME, keys)
        order = list(instance.get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME))
        grouped = daily_run_requests(order, tick, "Europe/London", 3, accounts_per_run=2)
        assert [r.tags.get(ACCOUNTS_TAG) or r.tags[ACCOUNT_TAG] for r in grouped] == ["a05,a01", "a04,a02", "a03"]
        covered = [_partitions_of(r.tags, instance) for r in grouped]
        assert sum(len(c) for c in covered) == len(keys) * len(days)  # no account-day in two runs
        assert set().union(*covered) == {partition_key(k, d) for k in keys for d in days}
        assert account_keys_from_tags(grouped[0].tags, sorted(keys)) == ["a05", "a01"]
        # One per run: today's shape, each run tagged with its account for the queue's limit.
        single = daily_run_requests(order, tick, "Europe/London", 3)
        assert [r.tags[ACCOUNT_TAG] for r in single] == order
        assert len({r.run_key for r in grouped}) == len(grouped)


def test_webhook_runs_group_neighbouring_accounts_asking_for_the_same_days():
    from bank_pipeline.orchestration.sensors import group_webhook_plan

    d = dt.date(2026, 11, 20)
    week, day = (d - dt.timedelta(days=3), d), (d, d)
    order = ["a1", "a2", "a3", "a4", "a5", "a6"]
    plan = {"a1": (*week, ["1"]), "a2": (*week, ["2", "9"]), "a3": (*week, ["3"]), "a5": (*week, ["5"]),
            "a6": (*day, ["6"]), "zz": (*week, ["7"])}  # zz: not a partition yet
    runs = group_webhook_plan(plan, order, per_run=2)
    assert [(keys, events) for keys, _, _, events in runs] == [
        (["a1", "a2"], ["1", "2", "9"]),  # at most 2 accounts a run
        (["a3"], ["3"]),
        (["a5"], ["5"]),  # a4 had no event: a run over a3..a5 would fetch it for nothing
        (["a6"], ["6"]),  # other days
        (["zz"], ["7"]),
    ]
    assert [(first, last) for _, first, last, _ in runs][-2] == day


def test_accounts_per_run_and_fetch_concurrency_are_validated(monkeypatch):
    from bank_pipeline.config import ConfigError, Settings

    monkeypatch.setenv("BANK_PIPELINE_ACCOUNTS_PER_RUN", "20")
    monkeypatch.setenv("BANK_PIPELINE_FETCH_CONCURRENCY", "3")
    settings = Settings.from_env()
    assert (settings.accounts_per_run, settings.fetch_concurrency) == (20, 3)
    # 101: a run's accounts tag would outgrow what dagster-postgres can index (config.MAX_ACCOUNTS_PER_RUN).
    for name, value in (("BANK_PIPELINE_ACCOUNTS_PER_RUN", "0"), ("BANK_PIPELINE_ACCOUNTS_PER_RUN", "101"),
                        ("BANK_PIPELINE_FETCH_CONCURRENCY", "many")):
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError) as error:
            Settings.from_env()
        assert name in str(error.value) and "\n" not in str(error.value)
        monkeypatch.delenv(name)
    assert Settings.from_env().accounts_per_run == 50 and Settings.from_env().fetch_concurrency == 8


def test_accounts_are_worked_on_concurrently_and_their_problems_stay_theirs():
    import threading

    from bank_pipeline.errors import BankPipelineError
    from bank_pipeline.orchestration.assets import _map_accounts

    barrier = threading.Barrier(3, timeout=10)  # breaks unless three accounts are in flight at once

    def work(key: str):
        barrier.wait()
        if key == "b":
            raise BankPipelineError("consent expired")
        return key.upper()

    results = dict(_map_accounts(work, ["a", "b", "c"], concurrency=3))
    assert results["a"] == "A" and results["c"] == "C" and str(results["b"]) == "consent expired"
    assert dict(_map_accounts(str.upper, ["a", "b"], concurrency=1)) == {"a": "A", "b": "B"}
    with pytest.raises(ZeroDivisionError):  # a bug is not an account's problem: it fails the step
        dict(_map_accounts(lambda key: 1 / 0, ["a", "b"], concurrency=2))


def test_daily_schedule_skips_without_accounts():
    from bank_pipeline.orchestration.schedules import daily_import_schedule

    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=dt.datetime(2026, 11, 21, 6, tzinfo=dt.timezone.utc),
            resources=_truelayer(),
        )
        result = daily_import_schedule.evaluate_tick(context)
        assert not result.run_requests and "connect" in result.skip_message


@pytest.mark.date_sensitive
def test_account_sensor_adds_partitions_and_requests_initial_backfill(db_url):
    from bank_pipeline.db import make_engine
    from bank_pipeline.orchestration.sensors import account_partitions_sensor

    _add_accounts(make_engine(db_url), ["anew001", "anew002"])
    with dg.instance_for_test() as instance:
        sync_account_partitions(instance, ["anew001"])
        with dg.build_sensor_context(instance=instance, resources={"database": AppDatabase(url=db_url), **_truelayer()}) as context:
            result = account_partitions_sensor(context)
        assert [list(r.partition_keys) for r in result.dynamic_partitions_requests] == [["anew002"]]
        assert [r.tags[ACCOUNT_TAG] for r in result.run_requests] == ["anew002"]
        assert result.run_requests[0].run_key == "initial:anew002"


def test_failed_runs_are_recorded_on_the_accounts_they_touched(db_url):
    from bank_pipeline.db import make_engine
    from bank_pipeline.orchestration.sensors import record_run_failure

    engine = make_engine(db_url)
    _add_accounts(engine, ["ax1", "ax2", "ax3"])
    tags = {RANGE_START_TAG: "ax1|2026-01-01", RANGE_END_TAG: "ax2|2026-01-31"}  # a UI backfill's tags
    assert record_run_failure(engine, "run-123", tags, "boom: provider_error") == ["ax1", "ax2"]
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.select(accounts.c.account_key, accounts.c.last_failure_run_id)).all())
    assert rows == {"ax1": "run-123", "ax2": "run-123", "ax3": None}
    # A run over several accounts whose step recorded the one that failed: the others were imported.
    _add_accounts(engine, ["ay1", "ay2"])
    with engine.begin() as conn:
        conn.execute(accounts.update().where(accounts.c.account_key == "ay2").values(
            last_failure_run_id="run-456", last_failure_message="fetch: consent expired"))
    tags = {RANGE_START_TAG: "ay1|2026-01-01", RANGE_END_TAG: "ay2|2026-01-31", ACCOUNTS_TAG: "ay1,ay2"}
    assert record_run_failure(engine, "run-456", tags, "the import failed for 1 of 2 account(s)") == ["ay2"]
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.select(accounts.c.account_key, accounts.c.last_failure_message)).all())
    assert rows["ay1"] is None and rows["ay2"] == "fetch: consent expired"


def test_secrets_reach_the_dagster_ui_only_as_env_var_names(monkeypatch):
    """Resource config is shown in the UI: secrets must be EnvVar references, never values."""
    from bank_pipeline.config import Settings
    from bank_pipeline.orchestration.resources import default_resources

    secrets = {
        "TRUELAYER_CLIENT_ID": "sandbox-app-123",
        "TRUELAYER_CLIENT_SECRET": "s3cr3t-client-value",
        "BANK_PIPELINE_FERNET_KEYS": "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtbG9uZy1rZXk=",
        "ANTHROPIC_API_KEY": "sk-ant-test-value",
        "BANK_PIPELINE_DATABASE_URL": "postgresql://app:pw@db/bank",
        "BANK_PIPELINE_TRUELAYER_ENV": "sandbox",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    resources = default_resources(Settings.from_env())
    shown = repr({name: resource for name, resource in resources.items()})
    for name in ("TRUELAYER_CLIENT_SECRET", "BANK_PIPELINE_FERNET_KEYS", "ANTHROPIC_API_KEY", "BANK_PIPELINE_DATABASE_URL"):
        assert secrets[name] not in shown
        assert name in shown  # bound as EnvVar("NAME")


def test_schedule_ticks_use_the_resource_config_the_ui_shows(monkeypatch):
    """The daily tick reads look-back and accounts per run from the `truelayer` resource, not from
    the environment: a resource configured otherwise than the environment wins."""
    from bank_pipeline.orchestration.schedules import daily_import_schedule

    monkeypatch.setenv("BANK_PIPELINE_LOOKBACK_DAYS", "3")
    from bank_pipeline.orchestration.resources import TrueLayerResource

    truelayer = TrueLayerResource(
        auth_url="http://127.0.0.1:9", data_url="http://127.0.0.1:9/data/v1", client_id="c", client_secret="s",
        lookback_days=1, accounts_per_run=1,
    )
    keys = ["acur01", "asav02"]
    with dg.instance_for_test() as instance:
        sync_account_partitions(instance, keys)
        tick = clock.to_wall(dt.datetime(2026, 11, 21, 6, 0, tzinfo=dt.timezone.utc))
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick, resources={"truelayer": truelayer})
        requests = list(daily_import_schedule.evaluate_tick(context).run_requests)
        assert len(requests) == 2  # one account per run
        days = [dt.date(2026, 11, 19), dt.date(2026, 11, 20)]  # look-back 1: the 19th and the 20th
        assert _partitions_of(requests[0].tags, instance) == {partition_key(keys[0], d) for d in days}


def test_resources_carry_every_setting_their_steps_and_ticks_read(monkeypatch):
    for name, value in (
        ("BANK_PIPELINE_ACCOUNTS_PER_RUN", "7"),
        ("BANK_PIPELINE_INITIAL_BACKFILL_DAYS", "30"),
        ("BANK_PIPELINE_ENRICH_QUEUE_BATCH", "9"),
        ("BANK_PIPELINE_ENRICH_BATCH_API_MIN", "100"),
    ):
        monkeypatch.setenv(name, value)
    resources = default_resources()
    truelayer, model = resources["truelayer"], resources["enrichment_model"]
    assert (truelayer.accounts_per_run, truelayer.initial_backfill_days) == (7, 30)
    assert (model.queue_batch, model.batch_api_min) == (9, 100)
