"""The user's path through the Dagster UI: a backfill launched on a running webserver + daemon.

Nothing is called in-process on the Dagster side: the test starts `dagster-webserver` and
`dagster-daemon run` on a fresh instance (SQLite storage with the SQLite application database,
dagster-postgres with the PostgreSQL one), launches the backfill with the UI's GraphQL mutation,
and reads the outcome as the UI shows it (backfill status, runs, the Partitions tab's statuses).
The simulator enforces the bank's 4-unattended-calls-a-day rule throughout.

The user connects with `bank-pipeline connect`, which imports the account's history as attended
calls, so the backfill's days have landed before it starts. Required:
- a backfill over settled, landed days replays them from the raw store with 0 bank calls;
- a year from the UI right after the demo lands the same day: every run succeeds, no bank call;
- an account whose fetch fails marks FAILED (not missing) exactly the partitions not in the
  ledger; the days already in it stay materialized; the ledger checks of its runs, which never
  ran, are not shown as failed: the daemon runs them alone afterwards
  (`ledger_checks_after_failure_sensor`).
"""

from __future__ import annotations

import datetime as dt

import pytest

from bank_pipeline.orchestration.checks import CHECKS_AFTER_TAG
from bank_pipeline.orchestration.partitions import partition_key, sync_account_partitions
from bank_pipeline.simulator import FaultConfig, SimulatorConfig
from bank_pipeline_tests.dagster_graphql_client import (
    FAILED,
    MATERIALIZED,
    TERMINAL_BACKFILL_STATUSES,
    TRANSACTION_ASSETS,
    DagsterGraphQL,
    GraphQLError,
)
from bank_pipeline_tests.fixtures.clock import TODAY
from bank_pipeline_tests.fixtures.pipeline import Pipeline, expected_totals, settings_for
from bank_pipeline_tests.user_cli import connect_user

pytestmark = [pytest.mark.slow, pytest.mark.daemon]

BACKFILL_DAYS = 60
# Settled days: older than the look-back window (BANK_PIPELINE_LOOKBACK_DAYS, 3 by default).
LAST_SETTLED = TODAY - dt.timedelta(days=5)
# Connect imports this much history (the default is two years; enough here to cover the backfill).
HISTORY_DAYS = BACKFILL_DAYS + 5
BACKFILL_TIMEOUT = 900  # generous: 2 shared cores; the daemon ticks every 30 s


class UserSession:
    """A connected mock user, the running webserver + daemon, and a GraphQL client on them."""

    def __init__(self, pipe: Pipeline, services, gql: DagsterGraphQL):
        self.pipe, self.services, self.gql = pipe, services, gql

    def keys(self, first: dt.date, last: dt.date) -> list[str]:
        days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
        return [partition_key(account, day) for account in self.pipe.keys for day in days]

    def backfill(self, keys: list[str]):
        try:
            result = self.gql.run_backfill(
                TRANSACTION_ASSETS, keys, timeout=BACKFILL_TIMEOUT, alive=self.services.check_alive
            )
        except GraphQLError as exc:
            raise AssertionError(f"{exc}\n{self.services.log_tails()}") from None
        print(f"backfill {result.backfill_id}: {result.status}, {len(result.runs)} runs {result.run_statuses}, "
              f"first run after {result.time_to_first_run or 0:.1f}s, wall {result.wall_seconds:.1f}s, {result.asset_counts}")
        return result


@pytest.fixture
def session(db_url, simulator_factory, dagster_services_factory, tmp_path):
    """alice connected with `bank-pipeline connect` (history imported), the bank's limits on
    (4 unattended calls a day, history only in the first minutes); webserver + daemon serving
    the same application database."""
    sim = simulator_factory(
        SimulatorConfig(seed=42, today=TODAY, faults=FaultConfig(unattended_limit=4, sca_window_minutes=5))
    )
    settings = settings_for(db_url, sim, tmp_path / "home")
    storage = "sqlite" if db_url.startswith("sqlite") else "postgres"
    services = dagster_services_factory(settings, storage=storage)
    gql = DagsterGraphQL(services.url)
    # The history's runs go to the instance the UI shows, as DAGSTER_HOME says for a user.
    connect_user(settings, "alice", dagster_home=services.dagster_home, history_days=HISTORY_DAYS)
    with services.instance() as instance:
        pipe = Pipeline.attach(settings, sim, instance, "alice")
        sync_account_partitions(instance, pipe.keys)  # already registered by connect: a no-op
        gql.wait_until_idle(timeout=BACKFILL_TIMEOUT, settle=5, alive=services.check_alive)
        yield UserSession(pipe, services, gql)


def test_backfill_from_the_ui_over_landed_history_makes_no_bank_call_and_lands_everything(session):
    pipe, gql = session.pipe, session.gql
    first = LAST_SETTLED - dt.timedelta(days=BACKFILL_DAYS - 1)
    keys = session.keys(first, LAST_SETTLED)
    before = pipe.ledger_rows()
    pipe.sim_admin("POST", "stats/reset")

    result = session.backfill(keys)

    assert result.status in TERMINAL_BACKFILL_STATUSES
    assert result.runs and all(run.status == "SUCCESS" for run in result.runs), result.run_statuses
    # Every partition of every asset is materialized, as the Partitions tab shows it.
    for asset in TRANSACTION_ASSETS:
        statuses = gql.status_of(asset, keys)
        wrong = {k: s for k, s in statuses.items() if s != MATERIALIZED}
        assert not wrong, f"{asset}: {len(wrong)} of {len(keys)} partitions not materialized, e.g. {list(wrong.items())[:3]}"
    # The Checks tab shows each partition's own result (not "Skipped" for a run over a range).
    for view in gql.asset_checks("loaded_transactions").values():
        shown = {key: view.partitions.get(key) for key in keys}
        assert shown == dict.fromkeys(keys, "SUCCEEDED"), (view.name, {k: s for k, s in shown.items() if s != "SUCCEEDED"})
    # The ledger holds exactly the bank's truth for these days.
    assert pipe.ledger_totals(first, LAST_SETTLED) == expected_totals(pipe.truth(first, LAST_SETTLED))
    # [history imported at connect + replay from the raw store] the days had landed at
    # connect time, so the backfill changed nothing and no call reached the bank.
    assert pipe.ledger_rows() == before, "the backfill changed the ledger: the history was not imported at connect"
    stats = pipe.sim_admin("GET", "stats").json()
    assert stats["data_api_calls"] == 0, f"the backfill called the bank: {stats['paths']}"


def test_a_run_that_cannot_fetch_fails_only_the_days_not_in_the_ledger(session):
    pipe, gql = session.pipe, session.gql
    # The backfill reaches five days before the history connect imported: those need the bank,
    # and the consent is gone. The days connect landed are in the ledger and must stay green.
    landed_first = TODAY - dt.timedelta(days=HISTORY_DAYS - 1)
    first, last = landed_first - dt.timedelta(days=5), TODAY - dt.timedelta(days=1)
    missing = session.keys(first, landed_first - dt.timedelta(days=1))
    landed = session.keys(landed_first, last)
    before = pipe.ledger_rows()
    pipe.sim_admin("POST", "consent/expire", json={"user": "alice"})

    result = session.backfill(missing + landed)

    assert result.status in TERMINAL_BACKFILL_STATUSES
    assert result.runs and all(run.status == "FAILURE" for run in result.runs), result.run_statuses
    for asset in TRANSACTION_ASSETS:
        # The days the bank could not serve: FAILED in the instance, for every asset (not missing).
        statuses = gql.status_of(asset, missing)
        wrong = {k: s for k, s in statuses.items() if s != FAILED}
        assert not wrong, f"{asset}: {len(wrong)} of {len(missing)} partitions not FAILED, e.g. {list(wrong.items())[:3]}"
        # The days already in the ledger: still materialized, though the runs over them failed.
        statuses = gql.status_of(asset, landed)
        wrong = {k: s for k, s in statuses.items() if s != MATERIALIZED}
        assert not wrong, f"{asset}: {len(wrong)} of {len(landed)} landed partitions turned {list(wrong.items())[:3]}"
    # Nothing that had landed was lost or duplicated.
    assert pipe.ledger_rows() == before
    # Checks of a run that failed before them are not shown as failed: the daemon's sensor runs
    # `ledger_checks` alone over each failed run's partitions.
    checks_runs = [
        gql.wait_for_runs({CHECKS_AFTER_TAG: run.run_id}, 1, timeout=BACKFILL_TIMEOUT, alive=session.services.check_alive)
        for run in result.runs
    ]
    assert all(len(runs) == 1 and runs[0].status == "SUCCESS" for runs in checks_runs), checks_runs
    views = gql.asset_checks("loaded_transactions")
    assert set(views) == {"no_duplicate_transactions", "running_balances_continuous", "quarantine_explained"}
    for view in views.values():
        shown = {key: view.partitions.get(key) for key in missing + landed}
        assert shown == dict.fromkeys(missing + landed, "SUCCEEDED"), (view.name, {k: s for k, s in shown.items() if s != "SUCCEEDED"})


@pytest.fixture
def newcomer(db_url, simulator_factory, dagster_services_factory, tmp_path):
    """A newcomer right after the demo: the bank's default limits (4 unattended calls a day), the
    history the demo lands (connect's default, two years) imported through the instance the UI shows."""
    sim = simulator_factory(
        SimulatorConfig(seed=42, today=TODAY, faults=FaultConfig(unattended_limit=4, sca_window_minutes=5))
    )
    settings = settings_for(db_url, sim, tmp_path / "home")
    services = dagster_services_factory(settings, storage="sqlite" if db_url.startswith("sqlite") else "postgres")
    gql = DagsterGraphQL(services.url)
    connect_user(settings, "alice", dagster_home=services.dagster_home)  # default history, as the demo
    with services.instance() as instance:
        pipe = Pipeline.attach(settings, sim, instance, "alice")
        gql.wait_until_idle(timeout=BACKFILL_TIMEOUT, settle=5, alive=services.check_alive)
        yield UserSession(pipe, services, gql)


def test_a_year_from_the_ui_right_after_the_demo_lands_the_same_day(newcomer):
    pipe, gql = newcomer.pipe, newcomer.gql
    # The last 365 days, today's partition included, over every account, from the Partitions tab.
    first = TODAY - dt.timedelta(days=364)
    keys = newcomer.keys(first, TODAY)
    pipe.sim_admin("POST", "stats/reset")

    result = newcomer.backfill(keys)

    assert result.status == "COMPLETED_SUCCESS", result.run_statuses
    assert result.runs and all(run.status == "SUCCESS" for run in result.runs), result.run_statuses
    for asset in TRANSACTION_ASSETS:
        statuses = gql.status_of(asset, keys)
        assert not [k for k, s in statuses.items() if s == FAILED], asset
        wrong = {k: s for k, s in statuses.items() if s != MATERIALIZED}
        assert not wrong, f"{asset}: {len(wrong)} of {len(keys)} not materialized, e.g. {list(wrong.items())[:3]}"
    assert pipe.ledger_totals(first, TODAY - dt.timedelta(days=1)) == expected_totals(
        pipe.truth(first, TODAY - dt.timedelta(days=1))
    )
    # The look-back days had just been fetched (attended, by the demo): not asked again.
    stats = pipe.sim_admin("GET", "stats").json()
    assert not stats["statuses"].get("429") and not stats["statuses"].get(429), stats["statuses"]
    assert stats["data_api_calls"] == 0, f"the backfill called the bank: {stats['paths']}"
    # A check result for every landed day: connect's history runs and the backfill's.
    for view in gql.asset_checks("loaded_transactions").values():
        history = newcomer.keys(TODAY - dt.timedelta(days=729), TODAY)
        shown = {key: view.partitions.get(key) for key in history}
        assert shown == dict.fromkeys(history, "SUCCEEDED"), (
            view.name, len([k for k, s in shown.items() if s != "SUCCEEDED"]), list(shown.items())[:2])
