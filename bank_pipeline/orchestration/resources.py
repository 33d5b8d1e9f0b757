"""Dagster resources: the outside world (application database, TrueLayer, the enrichment model).

The resources are the Dagster side's configuration: every value a step, sensor or schedule tick
uses is a field here, so the UI's resource view shows what runs use. `default_resources()` fills
them once from the validated settings (`Settings.from_env()`, which fails with a one-line error
naming the variable); nothing here reads the environment again. Secrets never appear as literal
resource config (which the Dagster UI displays): a secret set in the environment is bound as
`EnvVar("NAME")` (the UI shows the name); unset, it is the simulator's public demo value or None.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Optional

import dagster as dg
from sqlalchemy import Engine

from bank_pipeline.config import Settings
from bank_pipeline.db import make_engine, require_current_schema

_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


class AppDatabase(dg.ConfigurableResource):
    """The application database: a SQLite file by default, PostgreSQL by URL."""

    url: str

    def get_engine(self) -> Engine:
        """One engine per URL and process. The schema is not migrated here (sensor ticks and runs
        would race to do it): the database's owner does, with `bank-pipeline db upgrade` or any
        CLI command; until then a database behind the code fails with that instruction."""
        with _ENGINES_LOCK:
            engine = _ENGINES.get(self.url)
            if engine is None:
                engine = make_engine(self.url)
                try:
                    require_current_schema(engine)
                except BaseException:
                    engine.dispose()
                    raise
                _ENGINES[self.url] = engine
            return engine


class TrueLayerResource(dg.ConfigurableResource):
    """Where TrueLayer is (simulator, sandbox, live or any URL), how hard we may call it, and how
    runs cut their work (read by the fetch step, the sensors and the schedule's ticks)."""

    auth_url: str
    data_url: str
    client_id: str
    client_secret: str
    psu_ip: Optional[str] = None
    max_window_days: int = 90
    unattended_daily_budget: int = 4
    # Unattended calls a backfill leaves for the daily import, of `unattended_daily_budget`.
    backfill_reserve: int = 2
    # Days before today whose late postings are still expected: re-read even if already landed.
    lookback_days: int = 3
    timezone: str = "Europe/London"
    # Accounts whose bank calls a run's fetch step makes at once (threads).
    fetch_concurrency: int = 8
    # Accounts per daily or webhook run; days a newly connected account's first run backfills.
    accounts_per_run: int = 50
    initial_backfill_days: int = 90
    home: str = ".bank_pipeline"
    # Comma-separated Fernet keys for the stored tokens; unset = the key file in `home`.
    fernet_keys: Optional[str] = None

    def client_for(self, engine: Engine, connection_id: int):
        """A Data API client for one connection, refreshing its tokens as needed."""
        from bank_pipeline.connections import ConnectionStore, open_data_client
        from bank_pipeline.crypto import TokenCipher
        from bank_pipeline.truelayer.auth import AuthClient

        keys = tuple(k.strip() for k in (self.fernet_keys or "").split(",") if k.strip())
        auth = AuthClient(self.auth_url.rstrip("/"), self.client_id, self.client_secret)
        store = ConnectionStore(engine, TokenCipher.from_keys(keys, Path(self.home)), auth)
        return open_data_client(engine, self, connection_id, store=store)


class EnrichmentModel(dg.ConfigurableResource):
    """The model tier of enrichment: `offline` (default, no network) or `anthropic`, and its queue."""

    provider: str = "offline"
    model: str = "claude-haiku-4-5"
    batch_size: int = 50
    api_key: Optional[str] = None
    base_url: Optional[str] = None
    # The model queue (enrich/queue.py): descriptions per call, longest waits, Message Batches use.
    queue_batch: int = 25
    queue_delay_hours: float = 24.0
    queue_max_delay_hours: float = 2160.0
    batch_api_min: int = 0

    def build(self):
        from bank_pipeline.enrich import model_for
        from bank_pipeline.enrich.queue import QueuePolicy

        queue = QueuePolicy.of(self.queue_batch, self.queue_delay_hours, self.queue_max_delay_hours, self.batch_api_min)
        options = {"api_key": self.api_key, "model": self.model, "base_url": self.base_url, "batch_size": self.batch_size}
        return model_for(self.provider, queue=queue, **options)


def _secret(name: str, value: str | None, normalise=str.strip):
    """`EnvVar(name)` when `value` is that variable's (the UI then shows the name, not the value);
    else the value itself (the simulator's public defaults, or settings built in code for an
    in-process run, which no UI displays)."""
    return dg.EnvVar(name) if value and normalise(os.environ.get(name) or "") == value else value


def _key_list(raw: str) -> str:
    return ",".join(k.strip() for k in raw.split(",") if k.strip())


def default_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources, filled from `settings` (default: the validated environment)."""
    settings = settings or Settings.from_env()
    return {
        "database": AppDatabase(url=_secret("BANK_PIPELINE_DATABASE_URL", settings.database_url)),
        "truelayer": TrueLayerResource(
            auth_url=settings.auth_url,
            data_url=settings.data_url,
            client_id=_secret("TRUELAYER_CLIENT_ID", settings.client_id) or "",
            client_secret=_secret("TRUELAYER_CLIENT_SECRET", settings.client_secret) or "",
            psu_ip=settings.psu_ip,
            max_window_days=settings.max_window_days,
            unattended_daily_budget=settings.unattended_daily_budget,
            backfill_reserve=settings.backfill_reserve,
            lookback_days=settings.lookback_days,
            timezone=settings.timezone,
            fetch_concurrency=settings.fetch_concurrency,
            accounts_per_run=settings.accounts_per_run,
            initial_backfill_days=settings.initial_backfill_days,
            home=str(settings.home),
            fernet_keys=_secret("BANK_PIPELINE_FERNET_KEYS", ",".join(settings.fernet_keys) or None, _key_list),
        ),
        "enrichment_model": EnrichmentModel(
            provider=settings.enricher,
            model=settings.anthropic_model,
            batch_size=settings.enrich_batch_size,
            api_key=_secret("ANTHROPIC_API_KEY", settings.anthropic_api_key),
            base_url=settings.anthropic_base_url,
            queue_batch=settings.enrich_queue_batch,
            queue_delay_hours=settings.enrich_queue_delay_hours,
            queue_max_delay_hours=settings.enrich_queue_max_delay_hours,
            batch_api_min=settings.enrich_batch_api_min,
        ),
    }
