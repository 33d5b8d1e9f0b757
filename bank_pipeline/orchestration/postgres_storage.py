"""dagster-postgres's event log, with a run's planned events and materializations in batches.

Why: dagster-postgres writes a batch of materializations in one insert, but a new run's planned
events (one per asset and partition: ~9,000 for a year × 5 accounts) one by one, each on a new
connection — most of the time a UI backfill run spends before its first step. `deploy/postgres`
and `deploy/celery` configure it through Dagster's pluggable event-log storage key; same tables,
schema and migrations as dagster-postgres (event_batching.py says what is batched).
"""

from __future__ import annotations

from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

from bank_pipeline.orchestration.event_batching import BatchedAssetEvents


class BatchedPostgresEventLogStorage(BatchedAssetEvents, PostgresEventLogStorage):
    """PostgresEventLogStorage whose `store_event_batch` writes asset events as one insert."""

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> BatchedPostgresEventLogStorage:
        # As PostgresEventLogStorage.from_config_value, for this class.
        return cls(
            postgres_url=pg_url_from_config(config_value),
            inst_data=inst_data,
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
