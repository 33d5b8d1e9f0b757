"""A run's asset events written as one multi-row insert, behind Dagster's `store_event_batch`.

Why: Dagster hands the event log a new run's "planned" events (one per asset and partition) and,
with DAGSTER_EVENT_BATCH_SIZE (tuning.py), a step's materializations in one `store_event_batch`
call. Its SQLite storage writes every one of them on its own (two transactions and an asset-index
update each), and dagster-postgres does so for the planned events: a year × 5 accounts is ~9,000
planned events, one connection and insert each, before the run's first step starts.

What: consecutive asset events of one run go in one executemany (chunks of `BATCH_ROWS`), their
tags in one more, and the asset index is updated once per asset with its last event — what writing them one
by one leaves there, since each event overwrites the previous one's values. A partitioned check's
"planned" event (one per check and run, naming every partition of the run) gets a row per
partition, as Dagster gives it, but each row's copy of the event names only its own partition:
Dagster stores (and serializes) the whole event again on every row, so a run over N partitions
cost N² (a connect's two years of one account: 45 of its 114 s in a profile, and ~46 MB of rows
per run). The event log itself keeps the whole event, once. Everything else goes to the storage's
own code. The mixin sits in front of Dagster's SQLite and PostgreSQL event logs
(sqlite_storage.py, postgres_storage.py); each says how rows reach its index shard.
"""

from __future__ import annotations

import itertools

import sqlalchemy as sa
from dagster import DagsterEventType
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationPlanned
from dagster._core.definitions.partitions.subset import DefaultPartitionsSubset
from dagster._core.event_api import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log import SqlEventLogStorageTable
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster_shared.serdes import serialize_value

BATCHED_EVENT_TYPES = {
    DagsterEventType.ASSET_MATERIALIZATION,
    DagsterEventType.ASSET_OBSERVATION,
    DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
}
BATCH_ROWS = 500  # events a transaction writes (SQLAlchemy pages the inserts itself)


def _batch_key(event: EventLogEntry) -> str | None:
    """The run id of an event that can be written in a batch (an asset event with a key), else None."""
    dagster_event = event.dagster_event if event.is_dagster_event else None
    if dagster_event is None or dagster_event.event_type not in BATCHED_EVENT_TYPES or not dagster_event.asset_key:
        return None
    return event.run_id


class BatchedAssetEvents:
    """Mixin for a subclass of Dagster's SQL event log storage (put it first in the bases)."""

    def has_table(self, table_name: str) -> bool:
        """Dagster asks this before it stores each materialization and each check evaluation (a
        catalog query every time: about a quarter of a check evaluation's cost on PostgreSQL). A
        table, once there, stays (migrations only add tables), so a yes is remembered."""
        present = self.__dict__.setdefault("_tables_present", set())
        if table_name in present:
            return True
        if self._table_exists(table_name):
            present.add(table_name)
            return True
        return False

    def _table_exists(self, table_name: str) -> bool:
        return super().has_table(table_name)

    def store_event_batch(self, events) -> None:
        for run_id, group in itertools.groupby(events, key=_batch_key):
            group = list(group)
            if run_id is None or len(group) < 2:
                super().store_event_batch(group)
                continue
            for start in range(0, len(group), BATCH_ROWS):
                self._store_asset_events(run_id, group[start : start + BATCH_ROWS])

    def _store_asset_events(self, run_id: str, events: list[EventLogEntry]) -> None:
        rows = [self._event_to_row(event) for event in events]  # Dagster's rows, as its batch insert has them
        with self.index_transaction() as conn:
            ids = self._insert_event_rows(conn, run_id, rows)
            self._store_asset_event_tags(conn, events, ids)
            last_of_asset = {event.get_dagster_event().asset_key: (event, i) for event, i in zip(events, ids, strict=True)}
            for event, event_id in last_of_asset.values():
                self._store_asset_event(conn, event, event_id)

    def _insert_event_rows(self, index: sa.Connection, run_id: str, rows: list[dict]) -> list[int]:
        """Insert the rows where the storage keeps them; their ids in the index, in insert order.

        One executemany: SQLAlchemy compiles the statement once and sends the rows as multi-row
        inserts (its "insertmanyvalues"); a `.values([...])` statement was compiled afresh for
        every batch, a fifth of a long run's event writing in a profile."""
        statement = SqlEventLogStorageTable.insert().returning(SqlEventLogStorageTable.c.id, sort_by_parameter_order=True)
        return [int(row[0]) for row in index.execute(statement, rows)]

    def _store_asset_check_evaluation_planned(self, event: EventLogEntry, event_id: int | None) -> None:
        """Dagster's rows (one per partition of the run, or one without a partition), each with the
        event narrowed to its partition, written in one executemany."""
        planned = event.get_dagster_event().event_specific_data
        keys = planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
        common = {
            "asset_key": planned.asset_key.to_string(),
            "check_name": planned.check_name,
            "run_id": event.run_id,
            "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
            "evaluation_event_timestamp": self._event_insert_timestamp(event),
            "evaluation_event_storage_id": event_id,
        }
        rows = [{**common, "partition": key, "evaluation_event": serialize_value(_planned_for(event, key))} for key in keys]
        with self.index_connection() as conn:
            conn.execute(AssetCheckExecutionsTable.insert(), rows)


def _planned_for(event: EventLogEntry, partition: str | None) -> EventLogEntry:
    """A check's planned event as one partition's row keeps it: naming that partition only."""
    if partition is None:
        return event
    dagster_event = event.get_dagster_event()
    planned = dagster_event.event_specific_data
    narrowed = AssetCheckEvaluationPlanned(
        asset_key=planned.asset_key, check_name=planned.check_name, partitions_subset=DefaultPartitionsSubset({partition})
    )
    return event._replace(dagster_event=dagster_event._replace(event_specific_data=narrowed))
