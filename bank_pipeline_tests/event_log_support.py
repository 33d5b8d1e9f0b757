"""Two runs over a partitioned pair of assets with a partitioned check, the second failing, and what
Dagster reads back.

Used to check that an event-log storage with batched writes (bank_pipeline/orchestration/
event_batching.py) gives the UI exactly what Dagster's stock storage gives it.
"""

from __future__ import annotations

import warnings

import dagster as dg

warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning)
FAILING_DAYS = dg.StaticPartitionsDefinition([f"d{i:02d}" for i in range(12)])


@dg.asset(partitions_def=FAILING_DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def raw_days() -> None:
    pass


@dg.asset(partitions_def=FAILING_DAYS, backfill_policy=dg.BackfillPolicy.single_run(), deps=[raw_days])
def clean_days(context) -> None:
    if "d09" in context.partition_keys:
        raise dg.Failure("the last range fails")


@dg.asset_check(asset=clean_days, partitions_def=FAILING_DAYS)
def clean_days_check() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


def event_log_outcome(instance: dg.DagsterInstance) -> tuple:
    """What the UI reads back: planned and materialized partitions, statuses, the asset index, the
    check's state per partition (the second run's stays planned: its asset failed)."""
    job = dg.Definitions(assets=[raw_days, clean_days], asset_checks=[clean_days_check]).resolve_implicit_global_asset_job_def()
    outcome = []
    run_ids = []
    for first, last in (("d00", "d05"), ("d06", "d09")):
        result = job.execute_in_process(
            instance=instance, raise_on_error=False,
            tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        )
        planned = instance.get_records_for_run(
            result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        ).records
        outcome.append((result.success, sorted((r.asset_key.to_user_string(), r.partition_key) for r in planned)))
        run_ids.append(result.run_id)
        assert instance.get_latest_planned_materialization_info(dg.AssetKey("clean_days")).run_id == result.run_id
    for key in ("raw_days", "clean_days"):
        asset = dg.AssetKey(key)
        status = instance.get_status_by_partition(asset, FAILING_DAYS.get_partition_keys(), FAILING_DAYS)
        latest = instance.get_latest_materialization_event(asset)
        outcome.append((key, sorted(instance.get_materialized_partitions(asset)), status,
                        latest.dagster_event.partition if latest else None))
    checks = instance.event_log_storage.get_asset_check_partition_info([clean_days_check.check_key])
    outcome.append(sorted((c.partition_key or "", c.latest_execution_status.value, run_ids.index(c.latest_planned_run_id))
                          for c in checks))
    return tuple(outcome)


def events_written_one_by_one(monkeypatch, storage_class: type) -> list:
    """A spy (not a change): the event types instances of `storage_class` pass to `store_event`."""
    seen: list = []
    stock_store_event = storage_class.store_event

    def store_event(self, event) -> None:
        if isinstance(self, storage_class):
            seen.append(event.dagster_event_type)
        return stock_store_event(self, event)

    monkeypatch.setattr(storage_class, "store_event", store_event)
    return seen


def planned_check_partitions(instance: dg.DagsterInstance) -> list[tuple[str, list[str]]]:
    """Each planned check row's partition and the partitions its stored event names."""
    import sqlalchemy as sa
    from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
    from dagster_shared.serdes import deserialize_value

    table = AssetCheckExecutionsTable
    with instance.event_log_storage.index_connection() as conn:
        rows = conn.execute(
            sa.select(table.c.partition, table.c.evaluation_event).where(
                table.c.execution_status == "PLANNED", table.c.partition.is_not(None)
            )
        ).all()
    named = []
    for partition, stored in rows:
        subset = deserialize_value(stored, dg.EventLogEntry).get_dagster_event().event_specific_data.partitions_subset
        named.append((partition, sorted(subset.get_partition_keys())))
    return sorted(named)
