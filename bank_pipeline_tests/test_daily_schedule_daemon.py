"""The daily schedule as a user runs it: ticked by a real `dagster-daemon`, not evaluated in a test.

The accounts are connected through the OAuth flow and registered as `account` partitions before
webserver + daemon start; the schedule's cron (BANK_PIPELINE_SCHEDULE_CRON) names a minute just
ahead, so the daemon fires it once. Its run requests group the accounts
(BANK_PIPELINE_ACCOUNTS_PER_RUN=3: six accounts, two runs); the runs are queued and launched by
the daemon in their own processes, whose clock is the test's (BANK_PIPELINE_CLOCK_OFFSET), while
the daemon ticks on the wall clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from bank_pipeline.orchestration.partitions import ACCOUNTS_TAG, sync_account_partitions
from bank_pipeline.simulator import FaultConfig, SimulatorConfig
from bank_pipeline_tests.dagster_graphql_client import DagsterGraphQL, GraphQLError
from bank_pipeline_tests.dagster_services import one_tick_cron
from bank_pipeline_tests.fixtures.clock import TODAY
from bank_pipeline_tests.fixtures.pipeline import Pipeline, expected_totals, settings_for

pytestmark = [pytest.mark.slow, pytest.mark.daemon]

SCHEDULE = "daily_import_schedule"
TICK_TIMEOUT = 400  # up to two minutes to the tick, then two runs on 2 shared cores


def test_the_daemons_daily_tick_launches_grouped_runs_that_land_the_banks_days(
    db_url, simulator_factory, dagster_services_factory, tmp_path
):
    sim = simulator_factory(SimulatorConfig(seed=42, today=TODAY, history_days=30, faults=FaultConfig(unattended_limit=None)))
    pipe = Pipeline(settings_for(db_url, sim, tmp_path / "home"), sim, None, "multi-6")  # OAuth flow
    assert len(pipe.keys) == 6
    cron, _ = one_tick_cron(pipe.settings.timezone, not_before_seconds=60)
    settings = dataclasses.replace(pipe.settings, accounts_per_run=3, schedule_cron=cron, unattended_daily_budget=100_000)
    storage = "sqlite" if db_url.startswith("sqlite") else "postgres"
    services = dagster_services_factory(
        settings, storage=storage, setup=lambda instance: sync_account_partitions(instance, pipe.keys)
    )
    gql = DagsterGraphQL(services.url)
    try:
        runs = gql.wait_for_runs({"dagster/schedule_name": SCHEDULE}, 2, timeout=TICK_TIMEOUT, alive=services.check_alive)
    except GraphQLError as exc:
        raise AssertionError(f"{exc}\n{services.log_tails()}") from None

    assert [r.status for r in runs] == ["SUCCESS", "SUCCESS"], [gql.failure_reasons(r.run_id) for r in runs]
    groups = sorted(r.tags[ACCOUNTS_TAG].split(",") for r in runs)
    assert [len(g) for g in groups] == [3, 3] and sorted(sum(groups, [])) == sorted(pipe.keys)
    ticks = [t for t in gql.schedule_ticks(SCHEDULE) if t["runIds"]]
    assert len(ticks) == 1 and set(ticks[0]["runIds"]) == {r.run_id for r in runs}
    # Yesterday and the look-back window on the pipeline's clock (TODAY), whatever the real date.
    last = TODAY - dt.timedelta(days=1)
    first = last - dt.timedelta(days=settings.lookback_days)
    assert pipe.ledger_totals(first, last) == expected_totals(pipe.truth(first, last))
    assert sum(count for count, _ in pipe.ledger_totals(first, last).values()) > 0
