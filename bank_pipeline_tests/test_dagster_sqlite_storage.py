"""The embedded Dagster instance (the repo's dagster.yaml) commits on WAL/synchronous=NORMAL connections.

These fail if a Dagster upgrade routes the event log's writes around the storage hooks that
bank_pipeline.orchestration.sqlite_storage overrides (each write would then wait for the disk
again: the bench `pipeline_backfill` prints what that costs).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.events.log import EventLogEntry

from bank_pipeline.orchestration.instance import prepare_dagster_home, write_instance_config
from bank_pipeline.orchestration.sqlite_storage import (
    TunedSqliteEventLogStorage,
    TunedSqliteRunStorage,
    TunedSqliteScheduleStorage,
)
from bank_pipeline_tests.event_log_support import (
    event_log_outcome,
    events_written_one_by_one,
    planned_check_partitions,
)

NORMAL = 1  # PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL (SQLite's default), 3 EXTRA
PARTITIONS = dg.StaticPartitionsDefinition([f"p{i:03d}" for i in range(60)])


@dg.asset(partitions_def=PARTITIONS, backfill_policy=dg.BackfillPolicy.single_run())
def upstream() -> None:
    pass


@dg.asset(partitions_def=PARTITIONS, backfill_policy=dg.BackfillPolicy.single_run(), deps=[upstream])
def downstream() -> None:
    pass


DEFS = dg.Definitions(
    assets=[upstream, downstream],
    jobs=[dg.define_asset_job("both", partitions_def=PARTITIONS)],
    executor=dg.in_process_executor,
)


@pytest.fixture
def repo_instance(tmp_path, monkeypatch):
    """A Dagster instance on the packaged dagster.yaml, written into tmp_path as every entry point does."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    prepare_dagster_home()
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        yield instance


class SqliteWrites:
    """Records, for each write statement to a database under `root`, its connection's pragmas.

    SQLAlchemy's documented event hooks on all engines and pools: whichever code path Dagster
    uses to write, it is seen here.
    """

    def __init__(self, root: Path):
        self.root = str(root)
        self.writes: list[tuple[str, str, int]] = []  # (database file, journal_mode, synchronous)
        self.new_connections = 0

    def _ours(self, database: str | None) -> bool:
        return bool(database) and database.startswith(self.root)

    def on_connect(self, dbapi_connection, _record) -> None:
        database = dbapi_connection.execute("PRAGMA database_list").fetchone()[2]
        self.new_connections += self._ours(database)

    def before_execute(self, conn, _cursor, statement, *_args) -> None:
        words = statement.split(None, 3)
        # Dagster stamps a new database's schema version on its own connection, once per file.
        if self._ours(conn.engine.url.database) and words[0].upper() in ("INSERT", "UPDATE", "DELETE") and (
            "alembic_version" not in words
        ):
            raw = conn.connection.driver_connection
            pragmas = [raw.execute(f"PRAGMA {name}").fetchone()[0] for name in ("journal_mode", "synchronous")]
            self.writes.append((conn.engine.url.database, *pragmas))

    def __enter__(self):
        sa.event.listen(sa.pool.Pool, "connect", self.on_connect)
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self.before_execute)
        return self

    def __exit__(self, *exc) -> None:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", self.before_execute)
        sa.event.remove(sa.pool.Pool, "connect", self.on_connect)


def pragmas(conn: sa.Connection) -> tuple[str, int]:
    return tuple(conn.exec_driver_sql(f"PRAGMA {name}").scalar() for name in ("journal_mode", "synchronous"))


def test_a_run_on_the_repo_instance_commits_on_wal_normal_pooled_connections(repo_instance, tmp_path):
    instance = repo_instance
    assert isinstance(instance.run_storage, TunedSqliteRunStorage)
    assert isinstance(instance.event_log_storage, TunedSqliteEventLogStorage)
    assert isinstance(instance.schedule_storage, TunedSqliteScheduleStorage)

    with SqliteWrites(tmp_path) as seen:
        result = DEFS.resolve_job_def("both").execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": "p000", "dagster/asset_partition_range_end": "p059"},
        )
    assert result.success
    records = instance.get_records_for_run(result.run_id, limit=100_000).records
    materialized = instance.get_materialized_partitions(dg.AssetKey("downstream"))
    assert materialized == set(PARTITIONS.get_partition_keys())
    assert len(records) >= 4 * 60  # planned + materialized, per asset and partition

    # Every write of the run went through a WAL connection with synchronous=NORMAL (one write per
    # record, or fewer when DAGSTER_EVENT_BATCH_SIZE batches them: test_event_batching counts those)...
    assert seen.writes
    assert {(journal, sync) for _db, journal, sync in seen.writes} == {("wal", NORMAL)}
    written = {Path(db).name for db, _j, _s in seen.writes}
    assert {"index.db", f"{result.run_id}.db", "runs.db"} <= written
    # ...and the connections were reused, not opened (and checkpointed on close) per write.
    assert seen.new_connections < len(records) / 10

    # The storages' own connections, as every Dagster process opens them.
    with instance.event_log_storage.index_connection() as conn:
        assert pragmas(conn) == ("wal", NORMAL)
    with instance.event_log_storage.run_connection(result.run_id) as conn:
        assert pragmas(conn) == ("wal", NORMAL)
    with instance.run_storage.connect() as conn:
        assert pragmas(conn) == ("wal", NORMAL)
    with instance.schedule_storage.connect() as conn:
        assert pragmas(conn) == ("wal", NORMAL)

    # WAL is recorded in the files themselves, for any process that opens them.
    files = sorted(tmp_path.rglob("*.db"))
    assert {f.name for f in files} == {"runs.db", "schedules.db", "index.db", f"{result.run_id}.db"}
    for file in files:
        raw = sqlite3.connect(file)
        try:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal", file
        finally:
            raw.close()


def test_another_process_watching_a_run_sees_events_written_on_pooled_connections(repo_instance, tmp_path):
    """A webserver streams a run's logs by watching its event log; writes now land in the WAL."""
    writer = repo_instance
    run_id = "f" * 8 + "-0000-4000-8000-" + "0" * 12

    def entry(message: str) -> EventLogEntry:
        return EventLogEntry(error_info=None, level="INFO", user_message=message, run_id=run_id,
                             timestamp=time.time(), step_key=None, job_name="both", dagster_event=None)

    writer.event_log_storage.store_event(entry("first"))
    seen: list[str] = []
    both = threading.Event()

    def on_event(event: EventLogEntry, _cursor: str) -> None:
        seen.append(event.user_message)
        if len(seen) == 2:
            both.set()

    with dg.DagsterInstance.from_config(str(tmp_path)) as watcher:  # its own storages and connections
        watcher.event_log_storage.watch(run_id, None, on_event)
        try:
            writer.event_log_storage.store_event(entry("second"))
            assert both.wait(timeout=60), f"the watcher saw only {seen}"
        finally:
            watcher.event_log_storage.end_watch(run_id, on_event)
    assert seen == ["first", "second"]


def test_batched_event_writes_read_back_exactly_as_dagsters_own_sqlite_storage(tmp_path, monkeypatch):
    # A step's materializations and a run's planned events are written in batches
    # (sqlite_storage.py); what Dagster reads back must equal its stock storage's, failed run included.
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")  # tuning.py: how every run process writes
    one_by_one = events_written_one_by_one(monkeypatch, TunedSqliteEventLogStorage)
    outcomes = {}
    for name in ("stock", "tuned"):
        home = tmp_path / name
        home.mkdir()
        overrides = {"storage": {"sqlite": {"base_dir": str(home / "storage")}}} if name == "stock" else None
        if name == "tuned":
            write_instance_config(home)
            with dg.DagsterInstance.from_config(str(home)) as instance:
                assert isinstance(instance.event_log_storage, TunedSqliteEventLogStorage)
                outcomes[name] = event_log_outcome(instance)
                planned = planned_check_partitions(instance)
        else:
            with dg.instance_for_test(temp_dir=str(home), overrides=overrides) as instance:
                assert not isinstance(instance.event_log_storage, TunedSqliteEventLogStorage)
                outcomes[name] = event_log_outcome(instance)

    assert outcomes["tuned"] == outcomes["stock"]
    (ok_first, planned_first), (ok_second, planned_second) = outcomes["tuned"][:2]
    assert ok_first and not ok_second and len(planned_first) == 12 and len(planned_second) == 8
    statuses = outcomes["tuned"][3][2]
    assert (statuses["d08"].value, statuses["d05"].value, statuses.get("d11")) == ("FAILED", "MATERIALIZED", None)
    # ...and the tuned storage wrote none of the planned events or materializations one by one.
    batched = {dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED}
    assert one_by_one and not [t for t in one_by_one if t in batched]
    # A partitioned check's planned rows: one per partition, each naming its own partition only
    # (Dagster's stores the whole run's partitions on every row: N² for a run over N partitions).
    assert len(planned) == 10 and all(named == [partition] for partition, named in planned), planned
