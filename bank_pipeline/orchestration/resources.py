"""Dagster resources: the outside world (application database, TrueLayer, the enrichment model).

The resources are the Dagster side's configuration: every value a step, sensor or schedule tick
uses is a field here, so the UI's resource view shows what runs use. `default_resources()` fills
them once from the validated settings (`Settings.from_env()`, which fails with a one-line error
naming the variable). Secrets never appear as literal resource config, which the Dagster UI and the
instance's job snapshots display: the code location (`defs`) binds each secret field to
`EnvVar(variable)` whenever the variable is set (Dagster reads it when a run or tick initialises the
resource; the UI shows the name); unset, the field is empty and the resource falls back explicitly
(the simulator's public demo client secret, the key file in `home`, no Anthropic key).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Optional

import dagster as dg
from sqlalchemy import Engine

from bank_pipeline.config import ALERT_URLS_ENV, SIMULATOR_CLIENT_SECRET, ConfigError, Settings
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

    # simulator | sandbox | live: says which fallbacks apply when a secret's variable is unset.
    environment: str = "simulator"
    auth_url: str
    data_url: str
    client_id: str = ""
    # EnvVar("TRUELAYER_CLIENT_SECRET"); unset: the simulator's public demo secret, in the simulator only.
    client_secret: Optional[str] = None
    psu_ip: Optional[str] = None
    max_window_days: int = 90
    unattended_daily_budget: int = 4
    # Unattended calls a backfill leaves for the daily import, of `unattended_daily_budget`.
    backfill_reserve: int = 2
    # Days before today whose late postings are still expected: re-read even if already landed.
    lookback_days: int = 3
    # A look-back day fetched this recently (attended or not) is replayed, not asked again.
    refetch_after_hours: int = 6
    timezone: str = "Europe/London"
    # Accounts whose bank calls a run's fetch step makes at once (threads).
    fetch_concurrency: int = 8
    # Accounts per daily or webhook run; days a newly connected account's first run backfills.
    accounts_per_run: int = 50
    initial_backfill_days: int = 90
    home: str = ".bank_pipeline"
    # EnvVar("BANK_PIPELINE_FERNET_KEYS"): comma-separated Fernet keys for the stored tokens;
    # unset = the key file in `home`.
    fernet_keys: Optional[str] = None

    def secret(self) -> str:
        """The client secret, or the simulator's demo one; elsewhere an unset secret is an error."""
        if self.client_secret:
            return self.client_secret
        if self.environment == "simulator":
            return SIMULATOR_CLIENT_SECRET
        raise ConfigError(f"TRUELAYER_CLIENT_SECRET is not set (required for the {self.environment} environment)")

    def client_for(self, engine: Engine, connection_id: int):
        """A Data API client for one connection, refreshing its tokens as needed."""
        from bank_pipeline.connections import ConnectionStore, open_data_client
        from bank_pipeline.crypto import TokenCipher
        from bank_pipeline.truelayer.auth import AuthClient

        keys = tuple(k.strip() for k in (self.fernet_keys or "").split(",") if k.strip())
        auth = AuthClient(self.auth_url.rstrip("/"), self.client_id, self.secret())
        store = ConnectionStore(engine, TokenCipher.from_keys(keys, Path(self.home)), auth)
        return open_data_client(engine, self, connection_id, store=store)


class EnrichmentModel(dg.ConfigurableResource):
    """The model tier of enrichment: `offline` (default, no network) or `anthropic`, and its queue."""

    provider: str = "offline"
    model: str = "claude-haiku-4-5"
    batch_size: int = 50
    # EnvVar("ANTHROPIC_API_KEY"); unset: none (the `anthropic` provider then fails naming the variable).
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


class AlertChannels(dg.ConfigurableResource):
    """Where alerts go: Apprise URLs separated by spaces. They hold secrets, so the field is
    EnvVar("BANK_PIPELINE_ALERT_URLS") whenever that is set (the UI shows the name); unset: none."""

    urls: Optional[str] = None

    def channels(self):
        from bank_pipeline.alerts.channels import parse_channels

        return parse_channels(tuple((self.urls or "").split()))


def _key_list(raw: str) -> str:
    return ",".join(k.strip() for k in raw.split(",") if k.strip())


def _from_environment(name: str, value: str | None):
    """The code location's rule: the variable is the source, so bind it whenever it is set."""
    return dg.EnvVar(name) if os.environ.get(name, "").strip() else value


def _from_settings(name: str, value: str | None):
    """The runner's rule (settings built in code): a value that is the variable's is still bound as
    `EnvVar(name)`, since the runs it launches are recorded in the instance with their resource
    config; only values given in code (tests' keys) stay literal."""
    normalise = _key_list if name == "BANK_PIPELINE_FERNET_KEYS" else str.strip
    return dg.EnvVar(name) if value and normalise(os.environ.get(name) or "") == value else value


def default_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources: with no `settings`, the code location's, from the validated environment
    (secrets as `EnvVar` whenever set); with `settings` (the runner), filled from those."""
    secret = _from_settings if settings else _from_environment
    settings = settings or Settings.from_env()
    # The simulator's demo secret is public and the resource's own fallback: never bound as config.
    client_secret = settings.client_secret
    if settings.truelayer_env == "simulator" and client_secret == SIMULATOR_CLIENT_SECRET:
        client_secret = None
    return {
        "database": AppDatabase(url=secret("BANK_PIPELINE_DATABASE_URL", settings.database_url)),
        "truelayer": TrueLayerResource(
            environment=settings.truelayer_env,
            auth_url=settings.auth_url,
            data_url=settings.data_url,
            client_id=settings.client_id or "",
            client_secret=secret("TRUELAYER_CLIENT_SECRET", client_secret),
            psu_ip=settings.psu_ip,
            max_window_days=settings.max_window_days,
            unattended_daily_budget=settings.unattended_daily_budget,
            backfill_reserve=settings.backfill_reserve,
            lookback_days=settings.lookback_days,
            refetch_after_hours=settings.refetch_after_hours,
            timezone=settings.timezone,
            fetch_concurrency=settings.fetch_concurrency,
            accounts_per_run=settings.accounts_per_run,
            initial_backfill_days=settings.initial_backfill_days,
            home=str(settings.home),
            fernet_keys=secret("BANK_PIPELINE_FERNET_KEYS", ",".join(settings.fernet_keys) or None),
        ),
        "enrichment_model": EnrichmentModel(
            provider=settings.enricher,
            model=settings.anthropic_model,
            batch_size=settings.enrich_batch_size,
            api_key=secret("ANTHROPIC_API_KEY", settings.anthropic_api_key),
            base_url=settings.anthropic_base_url,
            queue_batch=settings.enrich_queue_batch,
            queue_delay_hours=settings.enrich_queue_delay_hours,
            queue_max_delay_hours=settings.enrich_queue_max_delay_hours,
            batch_api_min=settings.enrich_batch_api_min,
        ),
        "alert_channels": AlertChannels(urls=secret(ALERT_URLS_ENV, (os.environ.get(ALERT_URLS_ENV) or "").strip() or None)),
    }
