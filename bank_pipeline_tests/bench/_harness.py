"""Shared set-up for the pipeline benchmarks: a simulator, a connected mock user, a Dagster instance."""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from pathlib import Path

import dagster as dg
import httpx

from bank_pipeline.db import make_engine, migrate
from bank_pipeline_tests.dagster_services import postgres_dagster_database
from bank_pipeline_tests.fixtures.pipeline import settings_for
from bank_pipeline_tests.instance_support import repo_storage_config

# The Dagster instance storages a bench can run on (only the storage differs between them).
DAGSTER_STORAGES = {
    "sqlite": "SQLite, the repo's dagster.yaml (the one-machine default)",
    "sqlite-stock": "SQLite, Dagster's stock storage (`storage: sqlite`)",
    "postgres": "dagster-postgres, deploy/postgres's storage classes (a team or a service)",
}


@contextlib.contextmanager
def connected_user(user: str, today, *, latency_ms: int = 0, dagster_storage: str = "sqlite", **settings_overrides):
    """Yields (settings, sim, instance, accounts) with `user` connected through the real OAuth flow.

    `dagster_storage`: one of DAGSTER_STORAGES; "sqlite" takes the storage sections of the repo's
    dagster.yaml, relocated into the temporary directory; the rest is `instance_for_test`'s default.
    """
    from bank_pipeline.connections.flow import connect
    from bank_pipeline.simulator import FaultConfig, SimulatorConfig, run_in_thread

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        db_url = f"sqlite:///{tmp_path / 'bench.db'}"
        migrate(make_engine(db_url))
        (tmp_path / "dagster").mkdir()
        config = SimulatorConfig(seed=42, today=today, faults=FaultConfig(unattended_limit=None, latency_ms=latency_ms))
        if dagster_storage == "postgres":
            storage = postgres_dagster_database()
        elif dagster_storage == "sqlite":
            storage = contextlib.nullcontext(repo_storage_config(tmp_path / "dagster"))
        elif dagster_storage == "sqlite-stock":
            storage = contextlib.nullcontext({})
        else:
            raise ValueError(f"dagster_storage must be one of {sorted(DAGSTER_STORAGES)}, not {dagster_storage!r}")
        with storage as overrides, run_in_thread(config, host="127.0.0.1", port=0) as sim, dg.instance_for_test(
            temp_dir=str(tmp_path / "dagster"), overrides=overrides or None
        ) as instance:
            settings = settings_for(db_url, sim, tmp_path / "home", **settings_overrides)
            settings = dataclasses.replace(settings, unattended_daily_budget=100_000)
            result = connect(settings, simulator_user=user, open_browser=False, timeout=60)
            accounts = sorted(result.accounts, key=lambda a: a["account_key"])
            yield settings, sim, instance, accounts


def sim_stats(sim) -> dict:
    return httpx.get(f"{sim.base_url}/_sim/stats", timeout=30).json()


def reset_sim_stats(sim) -> None:
    httpx.post(f"{sim.base_url}/_sim/stats/reset", timeout=30).raise_for_status()
