"""The user's Dagster, for real: `dagster-webserver` and `dagster-daemon run` as subprocesses.

Tests and benchmarks drive the pipeline the way a user does from the UI (GraphQL on a running
webserver, runs launched by the daemon), on a fresh temporary DAGSTER_HOME whose `dagster.yaml`
is the repository's own with only the storage locations moved (SQLite files in the temp dir, or
a fresh dagster-postgres database). The code location is the repository's `workspace.yaml`
(`-m bank_pipeline`), optionally with extra locations; its environment points at the test's
application database and simulator, and carries the test's clock (BANK_PIPELINE_CLOCK_OFFSET).

    with dagster_services(settings, tmp_path) as services:
        gql = DagsterGraphQL(services.url)          # bank_pipeline_tests.dagster_graphql_client
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import yaml

from bank_pipeline import clock
from bank_pipeline.config import Settings
from bank_pipeline.orchestration.tuning import apply_event_log_defaults

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_SECONDS = float(os.environ.get("BANK_PIPELINE_TEST_DAGSTER_STARTUP_TIMEOUT", "240"))
LOG_TAIL_CHARS = 4000


class DagsterServicesError(RuntimeError):
    """The webserver or daemon did not come up (the message carries both processes' log tails)."""


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that make `Settings.from_env()` in a subprocess equal `settings`."""
    env = {
        "BANK_PIPELINE_HOME": str(settings.home),
        "BANK_PIPELINE_DATABASE_URL": settings.database_url,
        "BANK_PIPELINE_TRUELAYER_ENV": settings.truelayer_env,
        "TRUELAYER_AUTH_URL": settings.auth_url,
        "TRUELAYER_DATA_URL": settings.data_url,
        "TRUELAYER_REDIRECT_URI": settings.redirect_uri,
        "TRUELAYER_SCOPES": settings.scopes,
        "BANK_PIPELINE_FERNET_KEYS": ",".join(settings.fernet_keys),
        "BANK_PIPELINE_TIMEZONE": settings.timezone,
        "BANK_PIPELINE_START_DATE": settings.start_date,
        "BANK_PIPELINE_MAX_WINDOW_DAYS": str(settings.max_window_days),
        "BANK_PIPELINE_LOOKBACK_DAYS": str(settings.lookback_days),
        "BANK_PIPELINE_UNATTENDED_DAILY_BUDGET": str(settings.unattended_daily_budget),
        "BANK_PIPELINE_ENRICHER": settings.enricher,
        "BANK_PIPELINE_SCHEDULE_CRON": settings.schedule_cron,
        "BANK_PIPELINE_INITIAL_BACKFILL_DAYS": str(settings.initial_backfill_days),
        "BANK_PIPELINE_ACCOUNTS_PER_RUN": str(settings.accounts_per_run),
        "BANK_PIPELINE_FETCH_CONCURRENCY": str(settings.fetch_concurrency),
    }
    if settings.client_id:
        env["TRUELAYER_CLIENT_ID"] = settings.client_id
    if settings.client_secret:
        env["TRUELAYER_CLIENT_SECRET"] = settings.client_secret
    if settings.psu_ip:
        env["TRUELAYER_PSU_IP"] = settings.psu_ip
    return env


def one_tick_cron(timezone: str, not_before_seconds: float = 75) -> tuple[str, dt.datetime]:
    """A cron (for BANK_PIPELINE_SCHEDULE_CRON, in the schedule's `timezone`) that fires once: at
    the first minute boundary at least `not_before_seconds` from now on the wall clock, which is
    the daemon's, then not for a year. (An every-minute cron would launch the daily runs again
    each minute: Dagster's run keys are unique per tick time, not across ticks.) Returns the
    cron and that instant (UTC)."""
    from zoneinfo import ZoneInfo

    earliest = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=not_before_seconds)
    at = (earliest + dt.timedelta(minutes=1)).replace(second=0, microsecond=0).astimezone(ZoneInfo(timezone))
    return f"{at.minute} {at.hour} {at.day} {at.month} *", at.astimezone(dt.timezone.utc)


def instance_yaml(dagster_home: Path, storage: dict | None = None, overrides: dict | None = None) -> dict:
    """The packaged dagster.yaml with every on-disk location moved into `dagster_home`.

    `storage`: None keeps the repository's SQLite storages (in `dagster_home`); else storage sections
    (e.g. `postgres_dagster_database`'s).
    `overrides`: top-level keys replaced as given (e.g. a faster run queue for a benchmark).
    """
    from bank_pipeline_tests.instance_support import STORAGE_KEYS, repo_instance_config, repo_storage_config

    config = repo_instance_config(dagster_home / "storage")
    for key in STORAGE_KEYS:
        config.pop(key, None)
    # SQLite: the repository's own storage classes (what a user runs), with their files moved here.
    config.update(copy.deepcopy(storage) if storage else repo_storage_config(dagster_home / "storage"))
    config["compute_logs"]["config"]["base_dir"] = str(dagster_home / "logs")
    config.update(copy.deepcopy(overrides or {}))
    return config


def workspace_yaml(extra_modules: tuple[str, ...] = ()) -> dict:
    """The repository's workspace.yaml with working directories made absolute, plus `extra_modules`
    as further code locations (each a python module with a `defs` object)."""
    config = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text())
    for entry in config["load_from"]:
        module = entry.get("python_module")
        if isinstance(module, dict):
            module["working_directory"] = str((REPO_ROOT / module.get("working_directory", ".")).resolve())
    for name in extra_modules:
        config["load_from"].append(
            {"python_module": {"module_name": name, "working_directory": str(REPO_ROOT), "location_name": name}}
        )
    return config


@contextlib.contextmanager
def postgres_dagster_database(base_url: str | None = None) -> Iterator[dict]:
    """A fresh PostgreSQL database for Dagster's storage; yields deploy/postgres's storage sections on it."""
    from bank_pipeline_tests.instance_support import fresh_postgres_database, postgres_storage_config

    base = base_url or os.environ.get("BANK_PIPELINE_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"
    with fresh_postgres_database(base, "bp_dagster_ui") as url:
        yield postgres_storage_config(url)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return text[-LOG_TAIL_CHARS:]


@dataclasses.dataclass
class DagsterServices:
    """A running webserver + daemon on one DAGSTER_HOME."""

    url: str
    dagster_home: Path
    env: dict[str, str]
    webserver: subprocess.Popen
    daemon: subprocess.Popen
    logs: dict[str, Path]

    def log_tails(self) -> str:
        return "\n".join(f"--- {name} ({path}):\n{_tail(path)}" for name, path in self.logs.items())

    def instance(self):
        """A DagsterInstance on the same DAGSTER_HOME (the caller closes it or uses `with`)."""
        import dagster as dg

        return dg.DagsterInstance.from_config(str(self.dagster_home))

    def check_alive(self) -> None:
        for name, proc in (("dagster-webserver", self.webserver), ("dagster-daemon", self.daemon)):
            if proc.poll() is not None:
                raise DagsterServicesError(f"{name} exited with code {proc.returncode}\n{self.log_tails()}")


def _bin(name: str) -> str:
    """The console script beside this interpreter (the venv's), else whatever is on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def _stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the process group we started (webserver/daemon and their code servers), then SIGKILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    # Code servers the process spawned share its group; make sure none outlives it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _wait_ready(services: DagsterServices, locations: list[str], timeout: float) -> None:
    """Until GraphQL answers, every code location is loaded and the daemon's heartbeats are healthy."""
    from bank_pipeline_tests.dagster_graphql_client import DagsterGraphQL, GraphQLError

    deadline = time.monotonic() + timeout
    gql = DagsterGraphQL(services.url)
    last = "no answer yet"
    while time.monotonic() < deadline:
        services.check_alive()
        try:
            httpx.get(f"{services.url}/server_info", timeout=5).raise_for_status()
            entries = gql.location_statuses()
            errors = {name: e for name, (status, e) in entries.items() if e}
            if errors:
                raise DagsterServicesError(f"code location failed to load: {errors}\n{services.log_tails()}")
            loaded = {name for name, (status, _) in entries.items() if status == "LOADED"}
            healthy = gql.healthy_daemons()
            needed = {"BACKFILL", "QUEUED_RUN_COORDINATOR"}
            if set(locations) <= loaded and needed <= healthy:
                return
            last = f"locations loaded {sorted(loaded)} of {locations}; healthy daemons {sorted(healthy)}"
        except (httpx.HTTPError, GraphQLError) as exc:
            last = f"{exc.__class__.__name__}: {exc}"
        time.sleep(1)
    raise DagsterServicesError(
        f"Dagster webserver/daemon not ready after {timeout:.0f}s ({last})\n{services.log_tails()}"
    )


def _create_storage(dagster_home: Path, setup: Callable | None = None) -> None:
    """Create the instance's tables once, here: a webserver and a daemon starting together on an
    empty SQLite home would both stamp its Alembic version table (two heads; neither starts).
    `setup(instance)`, if given, runs then, before either process starts."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.get_runs_count()
        if setup is not None:
            setup(instance)


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so the `finally` below stops the processes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def dagster_services(
    settings: Settings,
    workdir: Path,
    *,
    storage: dict | None = None,
    instance_overrides: dict | None = None,
    extra_modules: tuple[str, ...] = (),
    extra_env: dict[str, str] | None = None,
    setup: Callable | None = None,
    startup_timeout: float = STARTUP_TIMEOUT_SECONDS,
) -> Iterator[DagsterServices]:
    """Start webserver + daemon on a fresh DAGSTER_HOME under `workdir`; always stop both after.

    The subprocesses get the test's clock offset (read now, so they agree with this process),
    this worktree on PYTHONPATH, and `settings` as environment variables. `setup(instance)` runs on
    the fresh instance before they start (e.g. registering account partitions before any sensor or
    schedule ticks).
    """
    dagster_home = Path(workdir) / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=False)
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml(dagster_home, storage, instance_overrides)))
    workspace = dagster_home / "workspace.yaml"
    workspace.write_text(yaml.safe_dump(workspace_yaml(extra_modules)))
    locations = ["bank_pipeline", *extra_modules]
    _create_storage(dagster_home, setup)

    env = dict(os.environ)
    apply_event_log_defaults(env)  # as `make ui` does
    env.update(settings_env(settings))
    env.update(
        DAGSTER_HOME=str(dagster_home),
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
        PYTHONWARNINGS="ignore",
        PYTHONUNBUFFERED="1",
    )
    offset = os.environ.get(clock.OFFSET_ENV)
    if offset is not None:
        env[clock.OFFSET_ENV] = offset
    env.update(extra_env or {})

    port = _free_port()
    logs = {"dagster-webserver": dagster_home / "webserver.log", "dagster-daemon": dagster_home / "daemon.log"}
    common = {"cwd": str(REPO_ROOT), "env": env, "stdin": subprocess.DEVNULL, "start_new_session": True}
    procs: list[subprocess.Popen] = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(_sigterm_as_exit())
        web_log = stack.enter_context(open(logs["dagster-webserver"], "wb"))
        daemon_log = stack.enter_context(open(logs["dagster-daemon"], "wb"))
        try:
            webserver = subprocess.Popen(
                [_bin("dagster-webserver"), "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)],
                stdout=web_log, stderr=subprocess.STDOUT, **common,
            )
            procs.append(webserver)
            daemon = subprocess.Popen(
                [_bin("dagster-daemon"), "run", "-w", str(workspace)],
                stdout=daemon_log, stderr=subprocess.STDOUT, **common,
            )
            procs.append(daemon)
            services = DagsterServices(f"http://127.0.0.1:{port}", dagster_home, env, webserver, daemon, logs)
            _wait_ready(services, locations, startup_timeout)
            yield services
        finally:
            for proc in reversed(procs):
                _stop(proc)
