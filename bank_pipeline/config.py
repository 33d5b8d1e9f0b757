"""Settings from the environment, with embedded defaults that need no account anywhere.

Everything the pipeline needs to know about the outside world comes through here, so switching
from the local simulator to TrueLayer's sandbox or live service is configuration only.
Secrets (client secret, Fernet keys, Anthropic key) are read here and never logged: `Settings`
hides them from `repr`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bank_pipeline.errors import BankPipelineError

SIMULATOR_DEFAULT_PORT = 8710
SIMULATOR_CLIENT_ID = "sim-client"
# Not a secret: the simulator's well-known demo client secret (it guards nothing real).
SIMULATOR_CLIENT_SECRET = "sim-secret"

TRUELAYER_ENVIRONMENTS = {
    "simulator": (
        f"http://127.0.0.1:{SIMULATOR_DEFAULT_PORT}",
        f"http://127.0.0.1:{SIMULATOR_DEFAULT_PORT}/data/v1",
    ),
    "sandbox": ("https://auth.truelayer-sandbox.com", "https://api.truelayer-sandbox.com/data/v1"),
    "live": ("https://auth.truelayer.com", "https://api.truelayer.com/data/v1"),
}

DEFAULT_SCOPES = "info accounts balance cards transactions offline_access"


class ConfigError(BankPipelineError, ValueError):
    """A setting is missing or malformed; the message names the variable to fix."""


# A run names every account it holds in one Dagster run tag (`bank_pipeline/accounts`, ~14 bytes
# an account); dagster-postgres indexes run tags, and a PostgreSQL btree row holds at most 2,704
# bytes, so a run over ~190 accounts could not even be created. 100 leaves room.
MAX_ACCOUNTS_PER_RUN = 100
# Bounds of the other numeric settings (the CLI's --history-days takes the same 0..36,500).
MAX_HISTORY_DAYS = 36_500
MAX_DAYS_A_CALL = 366
MAX_COUNT = 1_000_000

def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _int(name: str, default: int) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc


def _positive_int(name: str, default: int, most: int | None = None) -> int:
    return _bounded_int(name, default, 1, most)


def _bounded_int(name: str, default: int, least: int, most: int | None) -> int:
    """A whole number in least..most: a day count or budget far out of range would otherwise fail
    deep inside an import (a date overflow, a negative budget) instead of naming the variable."""
    value = _int(name, default)
    if value < least or (most is not None and value > most):
        bounds = f"from {least} to {most}" if most is not None else f"of at least {least}"
        raise ConfigError(f"{name} must be a whole number {bounds}, got {value}")
    return value


def partition_timezone() -> str:
    """BANK_PIPELINE_TIMEZONE (IANA name; the partitions' calendar), validated."""
    from zoneinfo import ZoneInfo

    name = _env("BANK_PIPELINE_TIMEZONE", "Europe/London")
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        raise ConfigError(f"BANK_PIPELINE_TIMEZONE must be an IANA time zone such as Europe/London, got {name!r}") from None
    return name


# Where the first connect records the first day partition when BANK_PIPELINE_START_DATE is unset.
PARTITIONS_START_FILE = "partitions-start"


def partition_start_date() -> str:
    """BANK_PIPELINE_START_DATE (YYYY-MM-DD; the first day partition), validated; unset: the day the
    first connect recorded (where its history can begin), else 2020-01-01."""
    import datetime as dt

    recorded = home_dir() / PARTITIONS_START_FILE
    fallback = recorded.read_text().strip() if recorded.is_file() else "2020-01-01"
    raw = _env("BANK_PIPELINE_START_DATE", fallback)
    try:
        return dt.date.fromisoformat(raw).isoformat()
    except ValueError:
        raise ConfigError(f"BANK_PIPELINE_START_DATE must be a date YYYY-MM-DD, got {raw!r}") from None


ALERT_URLS_ENV = "BANK_PIPELINE_ALERT_URLS"


def alert_urls() -> tuple[str, ...]:
    """BANK_PIPELINE_ALERT_URLS: the alert channels as Apprise URLs separated by spaces (e-mail
    `mailtos://user:password@smtp.example.org?to=you@example.org`, HTTP push `ntfys://…`,
    `json://…`, Slack, Discord …). They carry secrets: never logged, shown or stored
    (`bank_pipeline.alerts.channels` validates them and shows them redacted)."""
    return tuple((_env(ALERT_URLS_ENV) or "").split())


EXECUTORS = ("in_process", "celery")
DEFAULT_CELERY_BROKER = "amqp://guest:guest@127.0.0.1:5672//"


@dataclass(frozen=True)
class ExecutorSettings:
    """How a run's steps execute: `in_process` (the default: one process per run) or `celery`
    (each step one Celery task, run by `dagster-celery` workers; see deploy/celery/)."""

    name: str = "in_process"
    celery_broker: str = DEFAULT_CELERY_BROKER
    celery_backend: str = "rpc://"
    celery_queue: str = "dagster"


def executor_settings() -> ExecutorSettings:
    """BANK_PIPELINE_EXECUTOR and, for `celery`, BANK_PIPELINE_CELERY_BROKER / _BACKEND / _QUEUE."""
    name = (_env("BANK_PIPELINE_EXECUTOR", "in_process") or "in_process").lower().replace("-", "_")
    if name not in EXECUTORS:
        raise ConfigError(f"BANK_PIPELINE_EXECUTOR must be one of {list(EXECUTORS)}, got {name!r}")
    return ExecutorSettings(
        name=name,
        celery_broker=_env("BANK_PIPELINE_CELERY_BROKER", DEFAULT_CELERY_BROKER),
        celery_backend=_env("BANK_PIPELINE_CELERY_BACKEND", "rpc://"),
        celery_queue=_env("BANK_PIPELINE_CELERY_QUEUE", "dagster"),
    )


def home_dir() -> Path:
    """Where embedded state lives (SQLite file, Fernet key, Dagster storage): BANK_PIPELINE_HOME."""
    return Path(_env("BANK_PIPELINE_HOME", ".bank_pipeline")).resolve()


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Build with `Settings.from_env()`."""

    home: Path
    database_url: str
    truelayer_env: str
    auth_url: str
    data_url: str
    client_id: str | None
    client_secret: str | None = field(repr=False)
    redirect_uri: str
    scopes: str
    psu_ip: str | None
    fernet_keys: tuple[str, ...] = field(repr=False)
    timezone: str
    start_date: str
    max_window_days: int
    lookback_days: int
    unattended_daily_budget: int
    enricher: str
    anthropic_model: str
    anthropic_api_key: str | None = field(repr=False)
    anthropic_base_url: str | None
    enrich_batch_size: int
    schedule_cron: str
    initial_backfill_days: int
    backfill_reserve: int = 2
    history_days: int = 730
    # A look-back day the bank answered for this recently is replayed, not asked again.
    refetch_after_hours: int = 6
    # The model queue (enrich/queue.py): descriptions per call, longest wait, Message Batches use.
    enrich_queue_batch: int = 25
    enrich_queue_delay_hours: float = 24.0
    enrich_queue_max_delay_hours: float = 2160.0
    enrich_batch_api_min: int = 0
    # Scale: accounts per daily/webhook run, and concurrent bank calls within a run's fetch step.
    accounts_per_run: int = 50
    fetch_concurrency: int = 8

    @classmethod
    def from_env(cls) -> Settings:
        from bank_pipeline import clock

        clock.check_offset()  # read at every "now"; checked here so a bad value stops a command first
        home = home_dir()
        env = (_env("BANK_PIPELINE_TRUELAYER_ENV", "simulator") or "simulator").lower()
        if env not in TRUELAYER_ENVIRONMENTS:
            raise ConfigError(
                f"BANK_PIPELINE_TRUELAYER_ENV must be one of {sorted(TRUELAYER_ENVIRONMENTS)}, got {env!r}"
            )
        default_auth, default_data = TRUELAYER_ENVIRONMENTS[env]
        client_id = _env("TRUELAYER_CLIENT_ID", SIMULATOR_CLIENT_ID if env == "simulator" else None)
        client_secret = _env(
            "TRUELAYER_CLIENT_SECRET", SIMULATOR_CLIENT_SECRET if env == "simulator" else None
        )
        keys_raw = _env("BANK_PIPELINE_FERNET_KEYS")
        keys = tuple(k.strip() for k in keys_raw.split(",") if k.strip()) if keys_raw else ()
        return cls(
            home=home,
            database_url=_env("BANK_PIPELINE_DATABASE_URL", f"sqlite:///{home / 'bank_pipeline.db'}"),
            truelayer_env=env,
            auth_url=(_env("TRUELAYER_AUTH_URL", default_auth) or default_auth).rstrip("/"),
            data_url=(_env("TRUELAYER_DATA_URL", default_data) or default_data).rstrip("/"),
            client_id=client_id,
            client_secret=client_secret,
            redirect_uri=_env("TRUELAYER_REDIRECT_URI", "http://127.0.0.1:3456/callback"),
            scopes=_env("TRUELAYER_SCOPES", DEFAULT_SCOPES),
            psu_ip=_env("TRUELAYER_PSU_IP"),
            fernet_keys=keys,
            timezone=partition_timezone(),
            start_date=partition_start_date(),
            max_window_days=_bounded_int("BANK_PIPELINE_MAX_WINDOW_DAYS", 90, 1, MAX_DAYS_A_CALL),
            lookback_days=_bounded_int("BANK_PIPELINE_LOOKBACK_DAYS", 3, 0, MAX_DAYS_A_CALL),
            unattended_daily_budget=_bounded_int("BANK_PIPELINE_UNATTENDED_DAILY_BUDGET", 4, 0, MAX_COUNT),
            enricher=(_env("BANK_PIPELINE_ENRICHER", "offline") or "offline").lower(),
            anthropic_model=_env("BANK_PIPELINE_ANTHROPIC_MODEL", "claude-haiku-4-5"),
            anthropic_api_key=_env("ANTHROPIC_API_KEY"),
            anthropic_base_url=_env("ANTHROPIC_BASE_URL"),
            enrich_batch_size=_bounded_int("BANK_PIPELINE_ENRICH_BATCH_SIZE", 50, 1, MAX_COUNT),
            schedule_cron=_env("BANK_PIPELINE_SCHEDULE_CRON", "0 6 * * *"),
            initial_backfill_days=_bounded_int("BANK_PIPELINE_INITIAL_BACKFILL_DAYS", 90, 0, MAX_HISTORY_DAYS),
            backfill_reserve=_bounded_int("BANK_PIPELINE_BACKFILL_RESERVE", 2, 0, MAX_COUNT),
            history_days=_bounded_int("BANK_PIPELINE_HISTORY_DAYS", 730, 0, MAX_HISTORY_DAYS),
            refetch_after_hours=_bounded_int("BANK_PIPELINE_REFETCH_AFTER_HOURS", 6, 0, MAX_HISTORY_DAYS * 24),
            enrich_queue_batch=_bounded_int("BANK_PIPELINE_ENRICH_QUEUE_BATCH", 25, 1, MAX_COUNT),
            enrich_queue_delay_hours=float(_bounded_int("BANK_PIPELINE_ENRICH_QUEUE_DELAY_HOURS", 24, 0, MAX_HISTORY_DAYS * 24)),
            enrich_queue_max_delay_hours=float(_bounded_int("BANK_PIPELINE_ENRICH_QUEUE_MAX_DELAY_HOURS", 2160, 0, MAX_HISTORY_DAYS * 24)),
            enrich_batch_api_min=_bounded_int("BANK_PIPELINE_ENRICH_BATCH_API_MIN", 0, 0, MAX_COUNT),
            accounts_per_run=_positive_int("BANK_PIPELINE_ACCOUNTS_PER_RUN", 50, MAX_ACCOUNTS_PER_RUN),
            fetch_concurrency=_positive_int("BANK_PIPELINE_FETCH_CONCURRENCY", 8),
        )
