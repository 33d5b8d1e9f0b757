"""Launch import runs from Python (demo, CLI, tests, benchmarks) on a real Dagster instance.

Runs execute in this process but are recorded in the instance like any other run, so the Dagster
UI shows their history, logs and materializations. One run covers one account's whole date
range (the same shape a single-run backfill or the daily schedule produces).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster._core.storage.defs_state.base import set_defs_state_storage

from bank_pipeline.config import Settings
from bank_pipeline.errors import failure_line
from bank_pipeline.orchestration.checks import LEDGER_CHECKS_JOB_NAME, checks_after_failure
from bank_pipeline.orchestration.instance import prepare_dagster_home
from bank_pipeline.orchestration.jobs import IMPORT_JOB_NAME
from bank_pipeline.orchestration.partitions import range_tags, sync_account_partitions
from bank_pipeline.orchestration.resources import default_resources
from bank_pipeline.orchestration.tuning import apply_event_log_defaults
from bank_pipeline.truelayer.windows import split_windows


def ensure_dagster_home(settings: Settings) -> Path:
    """The configured instance directory (`orchestration/instance.py`: DAGSTER_HOME, else
    BANK_PIPELINE_HOME/dagster), whatever the working directory; DAGSTER_HOME set to it."""
    return prepare_dagster_home(settings.home)


def import_job(settings: Settings, name: str = IMPORT_JOB_NAME) -> dg.JobDefinition:
    """The import job of `bank_pipeline.definitions.defs` (its assets, checks and jobs), with the
    resources bound to `settings` instead (e.g. a simulator on another port); `name` picks
    another job of the same definitions (`ledger_checks`)."""
    from bank_pipeline.definitions import defs

    apply_event_log_defaults()  # the event-log batching this process's runs write with (tuning.py)
    bound = dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        executor=defs.executor,
        resources=default_resources(settings),
    )
    # Resolving definitions reads "defs state" from the instance Dagster last made current in this
    # thread; an instance that was closed or collected since then makes that read fail ("undefined
    # DagsterInstance weakref"). These definitions keep no defs state, so resolve them with none.
    with set_defs_state_storage(None):
        return bound.resolve_job_def(name)


@dataclass
class RunOutcome:
    account_key: str
    run_id: str
    success: bool
    metadata: dict[str, dict] = field(default_factory=dict)  # asset name -> run totals
    error: str | None = None
    first: dt.date | None = None
    last: dt.date | None = None


def _metadata_by_asset(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    """Each asset's run totals (the `run_…` metadata every partition's materialization carries)."""
    out: dict[str, dict] = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization
            out[mat.asset_key.to_user_string()] = {
                k.removeprefix("run_"): v.value for k, v in mat.metadata.items() if k.startswith("run_")
            }
    return out


def _failure_reason(result: dg.ExecuteInProcessResult) -> str:
    """The first failed step's own explanation (a `Failure` description or the error message)."""
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            data = event.step_failure_data
            if data.user_failure_data and data.user_failure_data.description:
                return data.user_failure_data.description
            if data.error:
                return failure_line(data.error)
    return "run failed"


def run_imports(
    instance: dg.DagsterInstance,
    settings: Settings,
    account_keys: list[str],
    first: dt.date,
    last: dt.date,
    *,
    extra_tags: dict[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
    console_log_level: str = "WARNING",
    whole_range: bool = False,
    analytics: bool = False,
) -> list[RunOutcome]:
    """Runs over first..last for each account, after registering the accounts as partitions.

    Like a UI backfill, each account's range is cut into runs of at most one bank window
    (`settings.max_window_days`; `whole_range` for one run per account), newest first: whatever today's budget allows lands in the ledger, the
    rest fails visibly and is fetched by a later run. The run's full event log is in the instance
    (and the UI); the console gets a line per run from `progress`. With `analytics`, the analytics
    assets follow once an import succeeded (`analytics_runs`), so what the user reads next is
    current without a daemon.
    """
    from bank_pipeline.db import make_engine
    from bank_pipeline.limits import release_leases

    sync_account_partitions(instance, account_keys)
    job = import_job(settings)
    checks_job: dg.JobDefinition | None = None  # resolved at the first failed run that needs it
    engine = make_engine(settings.database_url)
    outcomes = []
    run_config = {"loggers": {"console": {"config": {"log_level": console_log_level}}}}
    chunks = [(first, last)] if whole_range else list(reversed(split_windows(first, last, settings.max_window_days)))
    plan = [(key, a, b) for key in account_keys for a, b in chunks]
    for number, (key, a, b) in enumerate(plan, start=1):
        if progress:
            progress(f"[{number}/{len(plan)}] importing {key} {a}..{b} ...")
        started = time.perf_counter()
        tags = {**range_tags(key, a, b), **(extra_tags or {})}
        result = job.execute_in_process(instance=instance, tags=tags, run_config=run_config, raise_on_error=False)
        release_leases(engine, result.run_id)  # a failed run must not keep the account locked
        after = None if result.success else checks_after_failure(instance, instance.get_run_by_id(result.run_id))
        if after is not None:
            # As the daemon's `ledger_checks_after_failure_sensor` does for UI runs: the checks alone
            # follow a run that failed before them, so they show the ledger, not the failure.
            checks_job = checks_job or import_job(settings, LEDGER_CHECKS_JOB_NAME)
            checks_job.execute_in_process(instance=instance, tags=after, run_config=run_config, raise_on_error=False)
        error = None if result.success else _failure_reason(result)
        outcome = RunOutcome(key, result.run_id, result.success, _metadata_by_asset(result), error, a, b)
        outcomes.append(outcome)
        if progress:
            loaded = outcome.metadata.get("loaded_transactions", {})
            state = "ok" if result.success else f"FAILED: {error}"
            progress(f"      run {result.run_id[:8]}: {loaded.get('inserted', 0)} new transactions, "
                     f"{time.perf_counter() - started:.1f}s, {state}")
    if analytics and any(o.success for o in outcomes):
        # Not among the returned outcomes (they are the imports): a failed analytics run is said
        # through `progress`, and the next import or the daemon's sensor computes them again.
        analytics_runs(instance, settings, account_keys, first, last, tags=extra_tags,
                       run_config=run_config, progress=progress)
    return outcomes


def analytics_runs(
    instance: dg.DagsterInstance,
    settings: Settings,
    account_keys: list[str],
    first: dt.date,
    last: dt.date,
    *,
    tags: dict[str, str] | None = None,
    run_config: dict | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[RunOutcome]:
    """Transfers and recurring payments over the whole ledger, then monthly spending of the
    accounts' months of first..last: the analytics the daemon's automation sensor would request
    after these imports, run now."""
    from bank_pipeline.orchestration.analytics import (
        LEDGER_ANALYTICS_JOB_NAME,
        MONTHLY_SPENDING_JOB_NAME,
        month_range_tags,
    )

    outcomes = []
    plan = [
        (LEDGER_ANALYTICS_JOB_NAME, {}),
        (MONTHLY_SPENDING_JOB_NAME, month_range_tags(account_keys, first, last)),
    ]
    for name, extra in plan:
        started = time.perf_counter()
        result = import_job(settings, name).execute_in_process(
            instance=instance, tags={**(tags or {}), **extra}, run_config=run_config, raise_on_error=False
        )
        error = None if result.success else _failure_reason(result)
        outcomes.append(RunOutcome(name, result.run_id, result.success, _metadata_by_asset(result), error, first, last))
        if progress:
            state = "ok" if result.success else f"FAILED: {error}"
            progress(f"      {name} run {result.run_id[:8]}: {time.perf_counter() - started:.1f}s, {state}")
    return outcomes
