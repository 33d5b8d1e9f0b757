"""The import job on Dagster's Celery executor, for real: two `dagster-celery` workers on the local
RabbitMQ, dagster-postgres storage (deploy/celery/dagster.yaml), the application database on
PostgreSQL, the simulator's `multi-10` user (10 accounts) over 30 days.

Two runs import the same accounts at the same moment, launched with `dagster job execute` as an
operator would; then a third run finds the unattended budget spent. The leases and the budget live
in the application database, so they must hold although the steps run in other processes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster import DagsterEventType

from bank_pipeline.db.schema import account_leases, accounts, api_call_budget
from bank_pipeline.orchestration.partitions import (
    ACCOUNTS_PARTITIONS_NAME,
    group_range_tags,
    sync_account_partitions,
)
from bank_pipeline.simulator import FaultConfig
from bank_pipeline_tests.fixtures.clock import TODAY
from bank_pipeline_tests.fixtures.dagster_postgres import fresh_dagster_database
from bank_pipeline_tests.fixtures.database import postgres_base_url, postgres_schema_url
from bank_pipeline_tests.fixtures.pipeline import Pipeline, expected_totals, settings_for
from bank_pipeline_tests.fixtures.simulator import default_simulator_config

REPO = Path(__file__).resolve().parents[1]
BROKER = "amqp://guest:guest@127.0.0.1:5672//"
FIRST, LAST = TODAY - dt.timedelta(days=30), TODAY - dt.timedelta(days=1)
HOST = socket.gethostname()
# The bank's unattended calls per account and day: what the two imports need (a booked and a
# pending call each), and not one more.
BUDGET = 4
SLOW_BANK_MS = 2000


def _require_rabbitmq() -> None:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=3).close()
    except OSError as exc:
        pytest.fail(f"RabbitMQ is required at 127.0.0.1:5672 for the Celery executor test and is not reachable: {exc}")


@contextlib.contextmanager
def _workers(names: list[str], queue: str, env: dict, logs: Path):
    """`dagster-celery worker start` per name, on `queue`; each killed (its process group) at the end."""
    procs = []
    try:
        for name in names:
            log = open(logs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process below
            cmd = [str(Path(sys.executable).parent / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                   "-y", str(REPO / "deploy/celery/celery.yaml"), "-q", queue, "-n", name, "-l", "INFO",
                   "--", "--concurrency", "1", "--without-mingle", "--without-gossip"]
            procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True), log))
        from dagster_celery.cli import get_app

        app = get_app(str(REPO / "deploy/celery/celery.yaml"))
        wanted = {f"{name}@{HOST}" for name in names}
        deadline = time.monotonic() + 90
        while True:
            answered = {host for reply in app.control.ping(timeout=1.0) for host in reply}
            if wanted <= answered:
                break
            dead = [(p.args, p.returncode) for p, _ in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                text = "\n".join((logs / f"{n}.log").read_text()[-2000:] for n in names)
                pytest.fail(f"Celery workers {sorted(wanted - answered)} did not come up: {dead}\n{text}")
        yield
    finally:
        for proc, log in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait(timeout=30)
            log.close()
        with contextlib.suppress(Exception):
            from kombu import Connection

            with Connection(BROKER) as conn:
                conn.default_channel.queue_delete(queue)


def _runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return [r.dagster_run for r in sorted(instance.get_run_records(), key=lambda r: r.create_timestamp)]


def _events(instance: dg.DagsterInstance, run_id: str):
    return instance.all_logs(run_id)


def _step_time(events, step: str, kind: str) -> float:
    return next(e.timestamp for e in events if e.step_key == step and e.dagster_event
                and e.dagster_event.event_type_value == kind)


def _wait_for(condition, proc: subprocess.Popen, failure: str, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{failure}:\n{proc.output()}")
        time.sleep(0.5)


def _leases_held(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(account_leases)).scalar_one()


def _hold_window(events) -> tuple[float, float]:
    """A run's work on its accounts: from the fetch step's having taken every lease (logged just
    after) to the enrich step's end of work (logged just before it releases them)."""
    def when(step: str, text: str) -> float:
        return next(e.timestamp for e in events if e.step_key == step and text in (e.user_message or ""))

    return when("fetched_transactions", "fetch: holding the lease"), when("enriched_transactions", "releasing the run's leases")


def test_the_executor_is_chosen_by_configuration_in_one_place(monkeypatch):
    from bank_pipeline.config import ConfigError, executor_settings
    from bank_pipeline.orchestration.executors import celery_executor_config, import_executor

    monkeypatch.delenv("BANK_PIPELINE_EXECUTOR", raising=False)
    assert import_executor() is dg.in_process_executor  # the default is unchanged
    monkeypatch.setenv("BANK_PIPELINE_EXECUTOR", "celery")
    monkeypatch.setenv("BANK_PIPELINE_CELERY_BROKER", "amqp://u:s3cret@mq.internal:5672//")
    monkeypatch.setenv("BANK_PIPELINE_CELERY_QUEUE", "imports")
    settings = executor_settings()
    assert import_executor(settings).name == "celery"
    config = celery_executor_config(settings)
    # The broker's password is read from the environment when the run starts, never recorded.
    assert config["broker"] == {"env": "BANK_PIPELINE_CELERY_BROKER"} and config["backend"] == "rpc://"
    assert config["config_source"]["task_default_queue"] == "imports"
    monkeypatch.setenv("BANK_PIPELINE_EXECUTOR", "dask")
    with pytest.raises(ConfigError, match="BANK_PIPELINE_EXECUTOR must be one of"):
        executor_settings()


@pytest.mark.slow
@pytest.mark.postgres
def test_import_on_celery_workers_shares_leases_and_budget(simulator_factory, tmp_path, monkeypatch):
    _require_rabbitmq()
    if not postgres_base_url():
        pytest.skip("BANK_PIPELINE_TEST_POSTGRES_URL not set")
    started = time.perf_counter()
    sim = simulator_factory(default_simulator_config(faults=FaultConfig(unattended_limit=None)))
    with contextlib.ExitStack() as stack:
        app_db = stack.enter_context(postgres_schema_url())
        dagster_db = sa.engine.make_url(stack.enter_context(fresh_dagster_database()))
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(REPO / "deploy/celery/dagster.yaml", home / "dagster.yaml")  # the shipped instance config
        settings = settings_for(app_db, sim, tmp_path / "home", unattended_daily_budget=BUDGET, backfill_reserve=0)
        queue = f"bank-pipeline-test-{uuid.uuid4().hex[:10]}"
        env_vars = {
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": dagster_db.host, "DAGSTER_PG_PORT": str(dagster_db.port or 5432),
            "DAGSTER_PG_USER": dagster_db.username or "postgres", "DAGSTER_PG_PASSWORD": dagster_db.password or "",
            "DAGSTER_PG_DB": dagster_db.database,
            "BANK_PIPELINE_EXECUTOR": "celery", "BANK_PIPELINE_CELERY_BROKER": BROKER,
            "BANK_PIPELINE_CELERY_QUEUE": queue,
            "BANK_PIPELINE_DATABASE_URL": app_db, "BANK_PIPELINE_HOME": str(settings.home),
            "TRUELAYER_AUTH_URL": sim.auth_url, "TRUELAYER_DATA_URL": sim.data_url,
            "BANK_PIPELINE_FERNET_KEYS": ",".join(settings.fernet_keys), "BANK_PIPELINE_FETCH_CONCURRENCY": "1",
            "BANK_PIPELINE_UNATTENDED_DAILY_BUDGET": str(BUDGET), "BANK_PIPELINE_BACKFILL_RESERVE": "0",
            # The second run re-reads days the first fetched minutes before: ask the bank anyway,
            # so both runs spend budget from both workers.
            "BANK_PIPELINE_REFETCH_AFTER_HOURS": "0",
        }
        for name, value in env_vars.items():
            monkeypatch.setenv(name, value)
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        instance = stack.enter_context(dg.DagsterInstance.get())
        pipeline = Pipeline(settings, sim, instance, "multi-10")
        assert len(pipeline.keys) >= 10
        sync_account_partitions(instance, pipeline.keys)
        keys = instance.get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME)
        pipeline.sim_admin("POST", "stats/reset")

        names = [f"bp-a-{queue[-10:]}", f"bp-b-{queue[-10:]}"]
        stack.enter_context(_workers(names, queue, env, tmp_path))
        workers_up = time.perf_counter()

        def launch(first: dt.date, *extra: str) -> subprocess.Popen:
            """`dagster job execute` of the import over every account, `first`..LAST; its output in a file."""
            tags = json.dumps(group_range_tags(keys, first, LAST))
            out = tmp_path / f"run-{uuid.uuid4().hex[:6]}.log"
            with open(out, "w") as log:
                proc = subprocess.Popen(
                    [str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m", "bank_pipeline",
                     "-j", "import_transactions", "--tags", tags, *extra],
                    cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                )
            proc.output = lambda: out.read_text()[-3000:]
            return proc

        # The import of 10 accounts × 30 days; once its fetch step holds the accounts' leases, the
        # last three days of the same accounts (the daily look-back's shape) in a second run. The
        # bank answers slowly (2 s a call, one call at a time) until the second run's fetch step
        # has started, so the first run surely still holds the accounts then.
        pipeline.sim_admin("POST", "faults", json={"latency_ms": SLOW_BANK_MS})
        first = launch(FIRST)
        _wait_for(lambda: _leases_held(pipeline.engine) == len(keys), first, "the first run never took its leases")
        second = launch(LAST - dt.timedelta(days=2))
        _wait_for(lambda: len(_runs(instance)) == 2 and instance.all_logs(
            _runs(instance)[1].run_id, of_type=DagsterEventType.STEP_START), second,
            "the second run's fetch step never started")
        pipeline.sim_admin("POST", "faults", json={"latency_ms": 0})
        for proc in (first, second):
            proc.wait(timeout=300)
        runs = _runs(instance)
        assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), (
            first.output() + "\n" + second.output())
        imported = time.perf_counter()

        # The ledger is the simulator's ground truth: nothing lost, nothing counted twice.
        assert pipeline.ledger_totals(FIRST, LAST) == expected_totals(pipeline.truth(FIRST, LAST))

        # Steps ran on both workers (each Celery task records the worker that ran it).
        logs = {run.run_id: _events(instance, run.run_id) for run in runs}
        ran_on = {
            e.dagster_event.engine_event_data.metadata["Celery worker"].value
            for events in logs.values() for e in events
            if e.dagster_event and e.dagster_event.event_type_value == "ENGINE_EVENT"
            and "Celery worker" in e.dagster_event.engine_event_data.metadata
        }
        assert ran_on == {f"{name}@{HOST}" for name in names}

        # No account imported by two runs at once: each run held all 10 accounts' leases from its
        # fetch to the end of its enrich, and the two holds do not overlap, although the second
        # run's fetch step had started (on the other worker: the first run's steps kept the one
        # worker busy) while the first run held them.
        (a_start, a_end), (b_start, b_end) = sorted(_hold_window(events) for events in logs.values())
        assert a_end <= b_start, f"leases held at once: {a_start:.2f}..{a_end:.2f} and {b_start:.2f}..{b_end:.2f}"
        waiting = [_step_time(events, "fetched_transactions", "STEP_START") for events in logs.values()]
        assert max(waiting) < a_end, "the second run's fetch step did not start before the first run released its leases"

        # The budget is one counter per account and day in the database, whichever worker called:
        # it counts exactly the calls the bank saw from both runs.
        by_account = pipeline.sim_admin("GET", "stats").json()["accounts"]
        with pipeline.engine.connect() as conn:
            used = dict(conn.execute(
                sa.select(accounts.c.provider_account_id, api_call_budget.c.unattended_calls)
                .join(accounts, accounts.c.id == api_call_budget.c.account_id)
            ).all())
        assert used == {key: by_account[key] for key in used} and len(used) == len(keys)
        assert set(used.values()) == {BUDGET}

        # So a third run finds today's budget spent, on whichever worker: refused before any bank call.
        third = launch(LAST - dt.timedelta(days=2))
        third.wait(timeout=300)
        last_run = _runs(instance)[-1]
        assert last_run.status == dg.DagsterRunStatus.FAILURE, third.output()
        failures = [e.dagster_event.step_failure_data.user_failure_data.description
                    for e in _events(instance, last_run.run_id)
                    if e.dagster_event and e.dagster_event.event_type_value == "STEP_FAILURE"]
        assert failures and "budget exhausted" in failures[0], failures
        assert pipeline.sim_admin("GET", "stats").json()["accounts"] == by_account
        print(f"\ncelery: the second run waited {a_end - max(waiting):.1f}s for the leases; workers up in {workers_up - started:.1f}s, two concurrent imports of {len(keys)} "
              f"accounts × 30 days (and 3) in {imported - workers_up:.1f}s, total {time.perf_counter() - started:.1f}s")
