"""The repository's instance configs for tests and benches: dagster.yaml relocated under a
temporary directory, deploy/postgres's storages pointed at a fresh database.

The embedded default keeps Dagster's state under relative paths (`.bank_pipeline/dagster/...`),
resolved against the working directory; tests and benches must not write into the checkout.
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

REPO_DAGSTER_YAML = Path(__file__).resolve().parents[1] / "dagster.yaml"
DEPLOY_POSTGRES_YAML = REPO_DAGSTER_YAML.parent / "deploy" / "postgres" / "dagster.yaml"
STORAGE_KEYS = ("storage", "run_storage", "event_log_storage", "schedule_storage")


def repo_instance_config(under: Path) -> dict[str, Any]:
    """The repo's dagster.yaml as a dict, every relative `base_dir` moved under `under`."""

    def relocate(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: str(under / value) if key == "base_dir" and not Path(value).is_absolute() else relocate(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [relocate(item) for item in node]
        return node

    return relocate(yaml.safe_load(REPO_DAGSTER_YAML.read_text()))


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
