"""deploy/postgres's event log (orchestration/postgres_storage.py) reads back as dagster-postgres's own.

A new run's planned events and a step's materializations are written in batches there, on pooled
connections; these fail if the batches stop reaching the storage (a Dagster upgrade), if the pool is
bypassed, or if the UI would read back anything different from what stock dagster-postgres gives it.
"""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster_postgres.event_log import PostgresEventLogStorage

from bank_pipeline.orchestration.postgres_storage import BatchedPostgresEventLogStorage
from bank_pipeline_tests.event_log_support import (
    FAILING_DAYS,
    event_log_outcome,
    events_written_one_by_one,
    planned_check_partitions,
)
from bank_pipeline_tests.fixtures.dagster_postgres import fresh_dagster_database
from bank_pipeline_tests.instance_support import postgres_storage_config

pytestmark = pytest.mark.postgres


def _outcome(tmp_path, name: str, overrides: dict, database: str) -> tuple[tuple, int, type, int, list]:
    """(what Dagster reads back, event-log rows, event-log class, PostgreSQL connections opened to
    `database` meanwhile, the planned check rows' partitions) for the two runs on a fresh instance."""
    (tmp_path / name).mkdir()
    opened = []

    def on_connect(dbapi_connection, _record) -> None:
        if dbapi_connection.get_dsn_parameters().get("dbname") == database:
            opened.append(1)

    with dg.instance_for_test(temp_dir=str(tmp_path / name), overrides=overrides) as instance:
        sa.event.listen(sa.pool.Pool, "connect", on_connect)
        try:
            outcome = event_log_outcome(instance)
        finally:
            sa.event.remove(sa.pool.Pool, "connect", on_connect)
        with instance.event_log_storage.index_connection() as conn:
            rows = conn.execute(sa.text("SELECT count(*) FROM event_logs")).scalar_one()
        return outcome, rows, type(instance.event_log_storage), len(opened), planned_check_partitions(instance)


def test_batched_event_log_reads_back_exactly_as_dagster_postgres(tmp_path, monkeypatch):
    # deploy/postgres/dagster.yaml's event log, against dagster-postgres's own.
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")  # tuning.py: how every run process writes
    one_by_one = events_written_one_by_one(monkeypatch, BatchedPostgresEventLogStorage)
    with fresh_dagster_database() as stock_url, fresh_dagster_database() as batched_url:
        stock, stock_rows, stock_class, stock_connections, stock_planned = _outcome(
            tmp_path, "stock", {"storage": {"postgres": {"postgres_url": stock_url}}}, sa.make_url(stock_url).database)
        batched, batched_rows, batched_class, batched_connections, batched_planned = _outcome(
            tmp_path, "batched", postgres_storage_config(batched_url), sa.make_url(batched_url).database)

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
    # A partitioned check's planned rows: the same partitions, each naming only its own (dagster-postgres
    # stores the run's whole range on every row: N² for a run over N partitions).
    assert [p for p, _ in batched_planned] == [p for p, _ in stock_planned] and len(batched_planned) == 10
    assert all(named == [p] for p, named in batched_planned) and stock_planned[0][1] == [f"d0{i}" for i in range(6)]
    # Its connections are pooled (dagster-postgres opens one per statement outside the webserver);
    # the run and schedule storages stay dagster-postgres's own.
    assert batched_connections < stock_connections / 3, (batched_connections, stock_connections)
