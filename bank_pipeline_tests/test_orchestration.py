"""Dagster wiring: partition keys, the daily schedule's windows, the sensors' decisions."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa

from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import accounts, connections
from bank_pipeline.orchestration.partitions import (
    ACCOUNT_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    account_keys_from_tags,
    days_by_account,
    partition_key,
    range_tags,
    sync_account_partitions,
    transaction_partitions,
)
from bank_pipeline.orchestration.resources import AppDatabase


def _add_accounts(engine, keys: list[str]) -> None:
    now = utcnow()
    with engine.begin() as conn:
        cid = conn.execute(
            connections.insert().values(status="active", created_at=now, updated_at=now).returning(connections.c.id)
        ).scalar_one()
        for i, key in enumerate(keys):
            conn.execute(
                accounts.insert().values(
                    account_key=key, identity=f"sort:000000:{i:08d}", connection_id=cid, kind="account",
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
        # 06:00 London on 21 Nov: the last complete day is the 20th; look-back 3 → 17th..20th.
        tick = dt.datetime(2026, 11, 21, 6, 0, tzinfo=dt.timezone.utc)
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        requests = list(daily_import_schedule.evaluate_tick(context).run_requests)
        assert len(requests) == len(keys)  # one run per account: the queue limits one per account
        requested = set()
        for request in requests:
            requested |= _partitions_of(request.tags, instance)
            assert request.tags[ACCOUNT_TAG] in keys
        days = [dt.date(2026, 11, d) for d in (17, 18, 19, 20)]
        assert requested == {partition_key(k, d) for k in keys for d in days}
        # Same tick again: same run keys, so Dagster launches nothing twice.
        again = list(daily_import_schedule.evaluate_tick(context).run_requests)
        assert [r.run_key for r in again] == [r.run_key for r in requests]


def test_daily_schedule_skips_without_accounts():
    from bank_pipeline.orchestration.schedules import daily_import_schedule

    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=dt.datetime(2026, 11, 21, 6, tzinfo=dt.timezone.utc))
        result = daily_import_schedule.evaluate_tick(context)
        assert not result.run_requests and "connect" in result.skip_message


@pytest.mark.date_sensitive
def test_account_sensor_adds_partitions_and_requests_initial_backfill(db_url):
    from bank_pipeline.db import make_engine
    from bank_pipeline.orchestration.sensors import account_partitions_sensor

    _add_accounts(make_engine(db_url), ["anew001", "anew002"])
    with dg.instance_for_test() as instance:
        sync_account_partitions(instance, ["anew001"])
        with dg.build_sensor_context(instance=instance, resources={"database": AppDatabase(url=db_url)}) as context:
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
