"""DAGSTER_EVENT_BATCH_SIZE (bank_pipeline/orchestration/tuning.py) is read by Dagster's private
code only: this fails when Dagster stops honouring it, so the tuning can be dropped or replaced."""

import dagster as dg
import pytest

from bank_pipeline.orchestration.tuning import EVENT_LOG_ENVIRONMENT, apply_event_log_defaults

DAYS = [f"2026-01-{d:02d}" for d in range(1, 7)]


@dg.asset(
    partitions_def=dg.StaticPartitionsDefinition(DAYS),
    backfill_policy=dg.BackfillPolicy.single_run(),  # like the pipeline's assets: one step, many partitions
)
def days_asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"partitions": len(context.partition_keys)})


def _batch_writes(monkeypatch) -> list[int]:
    """The sizes of the event-log batch writes of one run over all of DAYS."""
    batches: list[int] = []
    with dg.instance_for_test() as instance:
        storage = instance.event_log_storage
        store_event_batch = storage.store_event_batch

        def many(events):
            batches.append(len(events))
            return store_event_batch(events)

        monkeypatch.setattr(storage, "store_event_batch", many)
        result = dg.materialize(
            [days_asset],
            instance=instance,
            tags={"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]},
        )
        assert result.success
        materialized = instance.fetch_materializations(days_asset.key, limit=100).records
        assert sorted(r.partition_key for r in materialized) == DAYS
    return batches


@pytest.fixture
def no_tuning(monkeypatch):
    for name in EVENT_LOG_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


def test_the_event_batch_size_turns_a_runs_materializations_into_batch_writes(no_tuning, monkeypatch):
    batches_without = _batch_writes(monkeypatch)
    assert batches_without == []  # off by default: one write per event

    apply_event_log_defaults()  # what `make ui` and the runner put in the run process's environment
    batches_with = _batch_writes(monkeypatch)
    # The planned events and the materializations of the six partitions went as batches (one
    # multi-row insert each on dagster-postgres; SQLite's storage loops over them).
    assert batches_with and min(batches_with) > 1 and sum(batches_with) >= 2 * len(DAYS), batches_with


def test_the_tuning_is_not_an_import_side_effect(no_tuning):
    import importlib
    import os

    import bank_pipeline.definitions

    importlib.reload(bank_pipeline.definitions)
    assert not set(EVENT_LOG_ENVIRONMENT) & set(os.environ)
