"""The repository's instance configs for tests and benches: the packaged dagster.yaml placed in a
temporary directory, deploy/postgres's storages pointed at a fresh database.

Tests on dagster-postgres use the storage classes a deployment gets, not Dagster's defaults.
"""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from bank_pipeline.orchestration.instance import instance_config

REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOY_POSTGRES_YAML = REPO_ROOT / "deploy" / "postgres" / "dagster.yaml"
STORAGE_KEYS = ("storage", "run_storage", "event_log_storage", "schedule_storage")


def repo_instance_config(under: Path) -> dict[str, Any]:
    """The packaged dagster.yaml as a dict, every relative `base_dir` placed under `under`."""
    return instance_config(under)


def repo_storage_config(under: Path) -> dict[str, Any]:
    """Only the storage sections of the repo's dagster.yaml (relocated under `under`)."""
    config = repo_instance_config(under)
    return {key: config[key] for key in STORAGE_KEYS if key in config}


def postgres_storage_config(postgres_url: str) -> dict[str, Any]:
    """The storage sections of deploy/postgres/dagster.yaml, on `postgres_url` instead of DAGSTER_PG_*."""
    config = yaml.safe_load(DEPLOY_POSTGRES_YAML.read_text())
    sections = {key: copy.deepcopy(config[key]) for key in STORAGE_KEYS if key in config}
    for section in sections.values():
        section["config"].pop("postgres_db")
        section["config"]["postgres_url"] = postgres_url
    return sections


@contextlib.contextmanager
def fresh_postgres_database(base_url: str, prefix: str = "bp_dagster") -> Iterator[str]:
    """The URL (psycopg2, as dagster-postgres wants) of a new empty database beside `base_url`'s; dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = sa.engine.make_url(base_url).set(drivername="postgresql+psycopg2", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
