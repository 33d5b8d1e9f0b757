"""The executor every run uses, chosen in one place: BANK_PIPELINE_EXECUTOR.

- `in_process` (default): a run's five short steps in the run's own process (no per-step process
  start-up); the work inside each step is batched across the run's partitions.
- `celery`: each step is one Celery task on the broker (`dagster-celery` workers run them, on as
  many machines as you like; see deploy/celery/). Needs the `celery` extra, Dagster storage that
  every worker reaches (dagster-postgres) and the application database on PostgreSQL. The
  per-account leases and the unattended budget live in the application database, so they hold
  across workers.

The launching process and every worker must see the same BANK_PIPELINE_CELERY_* settings.
"""

from __future__ import annotations

import os

import dagster as dg

from bank_pipeline.config import ConfigError, ExecutorSettings, executor_settings


def _source(name: str, value: str):
    """`{"env": name}` when the value came from that variable, so a broker password is not
    written into the run's recorded config; else the value (defaults without secrets)."""
    return {"env": name} if os.environ.get(name) == value else value


def celery_executor_config(settings: ExecutorSettings) -> dict:
    """The `dagster_celery.celery_executor` config for these settings; the workers' `-y` YAML
    (deploy/celery/celery.yaml) says the same."""
    return {
        "broker": _source("BANK_PIPELINE_CELERY_BROKER", settings.celery_broker),
        "backend": _source("BANK_PIPELINE_CELERY_BACKEND", settings.celery_backend),
        "config_source": {
            "task_default_queue": settings.celery_queue,
            # A worker takes a task only when it has a free slot, and acknowledges it when done:
            # a step waiting on an account's lease never holds another run's next step hostage
            # in its prefetch buffer, and a worker lost mid-step hands the step to another.
            "task_acks_late": True,
            "worker_prefetch_multiplier": 1,
        },
    }


def import_executor(settings: ExecutorSettings | None = None) -> dg.ExecutorDefinition:
    """The executor for the import job and for asset runs launched from the UI."""
    settings = settings or executor_settings()
    if settings.name == "in_process":
        return dg.in_process_executor
    try:
        from dagster_celery import celery_executor
    except ImportError:
        raise ConfigError(
            "BANK_PIPELINE_EXECUTOR=celery needs dagster-celery: pip install 'bank_pipeline[celery]'"
        ) from None
    return celery_executor.configured(celery_executor_config(settings), name="celery")
