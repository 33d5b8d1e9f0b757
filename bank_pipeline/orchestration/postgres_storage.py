"""dagster-postgres's event log, batched and on pooled connections.

Why: dagster-postgres writes a batch of materializations in one insert, but a new run's planned
events (one per asset and partition: ~9,000 for a year × 5 accounts) one by one; and outside the
webserver it opens a new PostgreSQL connection for every statement (NullPool). A run over one
account's 73 days asks `has_dynamic_partition` hundreds of times (Dagster checks each partition's
metadata against the run's range), each on a fresh connection: in a profile, most of the run.

What: a subclass of dagster-postgres's storage (same tables, schema and migrations), configured
by `deploy/postgres` and `deploy/celery` through Dagster's pluggable event-log key: asset events
in batches (event_batching.py) and a small connection pool, as Dagster itself gives the webserver
(`optimize_for_webserver`), pinged before use and dropped at fork (pooled_engines.py).
"""

from __future__ import annotations

from typing import Any

from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

from bank_pipeline.orchestration.event_batching import BatchedAssetEvents
from bank_pipeline.orchestration.pooled_engines import forget_at_fork

# Connections kept per process (a run worker, the daemon); more open for bursts and close again.
POOL = {"pool_size": 2, "max_overflow": 8, "pool_recycle": 3600, "pool_pre_ping": True}


class BatchedPostgresEventLogStorage(BatchedAssetEvents, PostgresEventLogStorage):
    """PostgresEventLogStorage with asset events in batches, on a pooled engine."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, inst_data=None, token_provider=None):
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        kwargs: dict[str, Any] = {"isolation_level": "AUTOCOMMIT", **POOL}
        options = self._engine.url.query.get("options")
        if options:  # as optimize_for_webserver keeps them
            kwargs["connect_args"] = {"options": options}
        stock_engine = self._engine
        self._engine = forget_at_fork(create_pg_engine(self.postgres_url, self._token_provider, **kwargs))
        stock_engine.dispose()

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> BatchedPostgresEventLogStorage:
        # As PostgresEventLogStorage.from_config_value, for this class.
        return cls(
            postgres_url=pg_url_from_config(config_value),
            inst_data=inst_data,
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    def dispose(self) -> None:
        super().dispose()
        self._engine.dispose()
