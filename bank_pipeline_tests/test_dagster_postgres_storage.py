"""deploy/postgres's event log (orchestration/postgres_storage.py) reads back as dagster-postgres's own.

A new run's planned events and a step's materializations are written in batches there; these fail
if the batches stop reaching the storage (a Dagster upgrade) or if the UI would read back anything
different from what the stock dagster-postgres storage gives it.
"""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster_postgres.event_log import PostgresEventLogStorage

from bank_pipeline.orchestration.postgres_storage import BatchedPostgresEventLogStorage
from bank_pipeline_tests.event_log_support import FAILING_DAYS, event_log_outcome, events_written_one_by_one
from bank_pipeline_tests.fixtures.dagster_postgres import fresh_dagster_database
from bank_pipeline_tests.instance_support import postgres_storage_config

pytestmark = pytest.mark.postgres


def _outcome(tmp_path, name: str, overrides: dict) -> tuple[tuple, int, type]:
    """(what Dagster reads back, event-log rows) for the two runs on a fresh instance."""
    (tmp_path / name).mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / name), overrides=overrides) as instance:
        outcome = event_log_outcome(instance)
        with instance.event_log_storage.index_connection() as conn:
            rows = conn.execute(sa.text("SELECT count(*) FROM event_logs")).scalar_one()
        return outcome, rows, type(instance.event_log_storage)


def test_batched_event_log_reads_back_exactly_as_dagster_postgres(tmp_path, monkeypatch):
    # [issues 8, 13] deploy/postgres/dagster.yaml's event log, against dagster-postgres's own.
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")  # tuning.py: how every run process writes
    one_by_one = events_written_one_by_one(monkeypatch, BatchedPostgresEventLogStorage)
    with fresh_dagster_database() as stock_url, fresh_dagster_database() as batched_url:
        stock, stock_rows, stock_class = _outcome(tmp_path, "stock", {"storage": {"postgres": {"postgres_url": stock_url}}})
        batched, batched_rows, batched_class = _outcome(tmp_path, "batched", postgres_storage_config(batched_url))

    assert (stock_class, batched_class) == (PostgresEventLogStorage, BatchedPostgresEventLogStorage)
    assert batched == stock
    assert batched_rows == stock_rows
    (ok_first, planned_first), (ok_second, planned_second) = batched[:2]
    assert ok_first and not ok_second and len(planned_first) == 12 and len(planned_second) == 8
    statuses = batched[3][2]
    assert (statuses["d08"].value, statuses["d05"].value, statuses.get("d11")) == ("FAILED", "MATERIALIZED", None)
    assert set(statuses) <= set(FAILING_DAYS.get_partition_keys())
    # ...and the batched storage wrote none of the planned events or materializations one by one.
    batched_types = {dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED}
    assert one_by_one and not [t for t in one_by_one if t in batched_types]
