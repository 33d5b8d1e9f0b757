"""Dagster resources: the outside world (application database, TrueLayer, the enrichment model).

Secrets never appear as literal resource config (which the Dagster UI displays): they are bound
with `EnvVar` when set in the environment, or are the simulator's public demo values.
"""

from __future__ import annotations

import dataclasses
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
    """Where TrueLayer is (simulator, sandbox, live or any URL) and how hard we may call it."""

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
    home: str = ".bank_pipeline"
    # Comma-separated Fernet keys for the stored tokens; unset = the key file in `home`.
    fernet_keys: Optional[str] = None

    def settings(self) -> Settings:
        return dataclasses.replace(
            Settings.from_env(),
            home=Path(self.home),
            fernet_keys=tuple(k for k in (self.fernet_keys or "").split(",") if k),
            auth_url=self.auth_url.rstrip("/"),
            data_url=self.data_url.rstrip("/"),
            client_id=self.client_id,
            client_secret=self.client_secret,
            psu_ip=self.psu_ip,
            max_window_days=self.max_window_days,
            unattended_daily_budget=self.unattended_daily_budget,
        )

    def client_for(self, engine: Engine, connection_id: int):
        """A Data API client for one connection, refreshing its tokens as needed."""
        from bank_pipeline.connections import open_data_client

        return open_data_client(engine, self.settings(), connection_id)


class EnrichmentModel(dg.ConfigurableResource):
    """The model tier of enrichment: `offline` (default, no network) or `anthropic`."""

    provider: str = "offline"
    model: str = "claude-haiku-4-5"
    batch_size: int = 40
    api_key: Optional[str] = None
    base_url: Optional[str] = None

    def build(self):
        from bank_pipeline.enrich import build_model

        settings = dataclasses.replace(
            Settings.from_env(),
            enricher=self.provider,
            anthropic_model=self.model,
            enrich_batch_size=self.batch_size,
            anthropic_api_key=self.api_key,
            anthropic_base_url=self.base_url,
        )
        return build_model(settings)


def _from_env(name: str, value: str | None):
    """`EnvVar(name)` when `value` came from that variable (the UI then shows the name, not the
    value); else the value itself (simulator defaults, or settings built in code)."""
    return dg.EnvVar(name) if value and os.environ.get(name) == value else value


def default_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    settings = settings or Settings.from_env()
    return {
        "database": AppDatabase(url=_from_env("BANK_PIPELINE_DATABASE_URL", settings.database_url)),
        "truelayer": TrueLayerResource(
            auth_url=settings.auth_url,
            data_url=settings.data_url,
            client_id=_from_env("TRUELAYER_CLIENT_ID", settings.client_id) or "",
            client_secret=_from_env("TRUELAYER_CLIENT_SECRET", settings.client_secret) or "",
            psu_ip=settings.psu_ip,
            max_window_days=settings.max_window_days,
            unattended_daily_budget=settings.unattended_daily_budget,
            backfill_reserve=settings.backfill_reserve,
            lookback_days=settings.lookback_days,
            timezone=settings.timezone,
            fetch_concurrency=settings.fetch_concurrency,
            home=str(settings.home),
            fernet_keys=_from_env("BANK_PIPELINE_FERNET_KEYS", ",".join(settings.fernet_keys) or None),
        ),
        "enrichment_model": EnrichmentModel(
            provider=settings.enricher,
            model=settings.anthropic_model,
            batch_size=settings.enrich_batch_size,
            api_key=_from_env("ANTHROPIC_API_KEY", settings.anthropic_api_key),
            base_url=settings.anthropic_base_url,
        ),
    }
