"""Dagster's SQLite storage, with commits that cost a page write rather than a disk flush.

Why: the embedded instance (`dagster.yaml`, SQLite under `.bank_pipeline/dagster`) writes every
event-log record in its own transaction, and Dagster's stock SQLite storages open a new engine and
connection for each one. A new connection to a WAL database costs an open, and the close of the
last connection checkpoints the WAL (two fsyncs); with the default `synchronous=FULL` every commit
fsyncs as well. A year × 5 accounts in one run writes tens of thousands of such records, so the
run was bound by the disk (several times slower than the same run on dagster-postgres).

What: the three storages below are Dagster's own SQLite storages (subclasses; same files, schema
and migrations), configured in `dagster.yaml` through Dagster's pluggable-storage keys
(`run_storage`, `event_log_storage`, `schedule_storage`: module/class/config). They override only
the connection hooks of Dagster's SQL storage interface (`run_connection`/`index_connection`,
`connect`), serving them from one pooled engine per database whose connections are opened with
`journal_mode=WAL` and `synchronous=NORMAL`. Dagster creates and migrates each database exactly
as before (the first connection to an event-log shard in a process is Dagster's own).

Safety: WAL is SQLite's mode for several processes on one machine (webserver, daemon, run
workers all open these files): readers never block the writer, writers queue on the database
lock (30 s busy timeout, like Dagster's). Dagster already creates these databases in WAL mode.
`synchronous=NORMAL` in WAL mode never corrupts the database; a power cut or OS crash (not a
process crash) can lose the last few commits. `synchronous=OFF` is never used. WAL needs a local
file system (not NFS), as Dagster's SQLite storage always has.

Batches: a step's materializations and a new run's planned events are written as one multi-row
insert into the run's shard and one into the index shard (event_batching.py says why and how);
Dagster's SQLite storage writes each on its own, ~10 ms an event, ~60 s of a 600-partition run.

Live run logs: Dagster's SQLite event log notices new events by watching the run's `.db` file
change, which only happened because each write closed the last connection (a checkpoint). With
pooled connections events land in the `-wal` file, so the event log uses Dagster's polling
watcher instead, as dagster-postgres does.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import sqlalchemy as sa
from dagster._core.storage.event_log import (
    SqlEventLogStorageTable,
    SqliteEventLogStorage,
    SqlPollingEventWatcher,
)
from dagster._core.storage.event_log.base import EventLogCursor
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME
from dagster._core.storage.runs import SqliteRunStorage
from dagster._core.storage.schedules import SqliteScheduleStorage

from bank_pipeline.orchestration.event_batching import BatchedAssetEvents
from bank_pipeline.orchestration.pooled_engines import forget_at_fork

PRAGMAS = {"journal_mode": "wal", "synchronous": 1}  # as `PRAGMA x` reads them back; 1 = NORMAL
BUSY_TIMEOUT_SECONDS = 30  # Dagster's own for its SQLite storages
MAX_RUN_SHARD_ENGINES = 8  # a webserver reads many runs' shards; keep the recent ones open


def _set_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def tuned_engine(conn_string: str) -> sa.Engine:
    """A pooled engine whose every new SQLite connection is in WAL mode with synchronous=NORMAL."""
    engine = sa.create_engine(conn_string, connect_args={"timeout": BUSY_TIMEOUT_SECONDS})
    sa.event.listen(engine, "connect", _set_pragmas)
    return forget_at_fork(engine)


@contextmanager
def _transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    with engine.connect() as conn, conn.begin():
        yield conn


class TunedSqliteEventLogStorage(BatchedAssetEvents, SqliteEventLogStorage):
    """Dagster's run-sharded SQLite event log, on pooled WAL/synchronous=NORMAL connections."""

    def __init__(self, base_dir: str, inst_data=None):
        # Set before Dagster's __init__, which may already index a new instance through our hooks.
        self._tuned_lock = threading.RLock()
        self._tuned_engines: OrderedDict[str, sa.Engine] = OrderedDict()
        self._event_watcher: SqlPollingEventWatcher | None = None
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> TunedSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def run_connection(self, run_id: str | None = None) -> AbstractContextManager[sa.Connection]:
        return self._tuned_connection(run_id, lambda: super(TunedSqliteEventLogStorage, self).run_connection(run_id))

    def index_connection(self) -> AbstractContextManager[sa.Connection]:
        return self._tuned_connection(INDEX_SHARD_NAME, super().index_connection)

    def _insert_event_rows(self, index: sa.Connection, run_id: str, rows: list[dict]) -> list[int]:
        # As Dagster's SQLite storage stores an asset event: in the run's shard, then in the index.
        with self.run_connection(run_id) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
        return super()._insert_event_rows(index, run_id, rows)

    def _table_exists(self, table_name: str) -> bool:
        # Dagster's own answer opens a new engine.
        with self.index_connection() as conn:
            return sa.inspect(conn).has_table(table_name)

    @contextmanager
    def _tuned_connection(self, shard, stock: Callable[[], AbstractContextManager]) -> Iterator[sa.Connection]:
        # One thread at a time per process, as in Dagster's own `_connect`.
        with self._tuned_lock:
            with _transaction(self._engine_for(shard, stock)) as conn:
                yield conn

    def _engine_for(self, shard, stock: Callable[[], AbstractContextManager]) -> sa.Engine:
        engine = self._tuned_engines.get(shard)
        if engine is not None:
            self._tuned_engines.move_to_end(shard)
            return engine
        with stock():  # Dagster creates and migrates the shard's database on its first connection
            pass
        engine = self._tuned_engines[shard] = tuned_engine(self.conn_string_for_shard(shard))
        run_shards = [name for name in self._tuned_engines if name != INDEX_SHARD_NAME]
        for name in run_shards[:-MAX_RUN_SHARD_ENGINES]:
            self._tuned_engines.pop(name).dispose()
        return engine

    def _dispose_engines(self, *, keep_index: bool) -> None:
        with self._tuned_lock:
            for name in list(self._tuned_engines):
                if not (keep_index and name == INDEX_SHARD_NAME):
                    self._tuned_engines.pop(name).dispose()

    def wipe(self) -> None:
        self._dispose_engines(keep_index=True)  # Dagster deletes the run shards' files
        super().wipe()

    def watch(self, run_id: str, cursor: str | None, callback) -> None:
        if cursor and EventLogCursor.parse(cursor).is_offset_cursor():
            raise ValueError("Cannot call `watch` with an offset cursor")
        with self._tuned_lock:
            if self._event_watcher is None:
                self._event_watcher = SqlPollingEventWatcher(self)
        self._event_watcher.watch_run(run_id, cursor, callback)

    def end_watch(self, run_id: str, handler) -> None:
        if self._event_watcher is not None:
            self._event_watcher.unwatch_run(run_id, handler)

    def dispose(self) -> None:
        if self._event_watcher is not None:
            self._event_watcher.close()
            self._event_watcher = None
        super().dispose()
        self._dispose_engines(keep_index=False)


class _PooledConnect:
    """`connect()` (Dagster's hook for the run and schedule storages) on one pooled, tuned engine."""

    def __init__(self, conn_string: str, inst_data=None):
        self._tuned_engine = tuned_engine(conn_string)
        super().__init__(conn_string, inst_data=inst_data)

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls.from_local(inst_data=inst_data, **config_value)

    def connect(self) -> AbstractContextManager[sa.Connection]:
        return _transaction(self._tuned_engine)

    def dispose(self) -> None:
        super().dispose()
        self._tuned_engine.dispose()


class TunedSqliteRunStorage(_PooledConnect, SqliteRunStorage):
    """Dagster's SQLite run storage, on pooled WAL/synchronous=NORMAL connections."""


class TunedSqliteScheduleStorage(_PooledConnect, SqliteScheduleStorage):
    """Dagster's SQLite schedule storage, on pooled WAL/synchronous=NORMAL connections."""
