"""A failed scheduled run alerts the person exactly once, through a real `dagster-daemon`: the
schedule's tick launches the daily run, it fails (the bank's call budget is 0), the daemon's
run-failure sensor raises the alert and a loopback HTTP receiver gets it — once, with the reason,
however many sensor ticks follow."""

from __future__ import annotations

import dataclasses
import time

import pytest

from bank_pipeline.orchestration.partitions import sync_account_partitions
from bank_pipeline.simulator import FaultConfig, SimulatorConfig
from bank_pipeline_tests.alert_receivers import PUSH_TOKEN, PushReceiver
from bank_pipeline_tests.dagster_graphql_client import DagsterGraphQL, GraphQLError
from bank_pipeline_tests.dagster_services import one_tick_cron
from bank_pipeline_tests.fixtures.clock import TODAY
from bank_pipeline_tests.fixtures.pipeline import Pipeline, settings_for

pytestmark = [pytest.mark.slow, pytest.mark.daemon]

SCHEDULE = "daily_import_schedule"
TICK_TIMEOUT = 300
ALERT_TIMEOUT = 120  # the run-failure sensor ticks every 30 s
QUIET_SECONDS = 65  # then more ticks of both alert sensors (every 30 s and 60 s): nothing more arrives


def test_a_failed_scheduled_run_alerts_exactly_once_with_its_reason(
    db_url, simulator_factory, dagster_services_factory, tmp_path
):
    if not db_url.startswith("sqlite"):
        pytest.skip("one backend is enough for the daemon's path; the outbox is tested on both")
    sim = simulator_factory(SimulatorConfig(seed=42, today=TODAY, history_days=30, faults=FaultConfig(unattended_limit=None)))
    pipe = Pipeline(settings_for(db_url, sim, tmp_path / "home"), sim, None, "alice")  # OAuth flow
    cron, _ = one_tick_cron(pipe.settings.timezone, not_before_seconds=60)
    settings = dataclasses.replace(pipe.settings, schedule_cron=cron, unattended_daily_budget=0)
    push = PushReceiver().start()
    try:
        services = dagster_services_factory(
            settings,
            setup=lambda instance: sync_account_partitions(instance, pipe.keys),
            extra_env={"BANK_PIPELINE_ALERT_URLS": push.url},
        )
        gql = DagsterGraphQL(services.url)
        try:
            [run] = gql.wait_for_runs({"dagster/schedule_name": SCHEDULE}, 1, timeout=TICK_TIMEOUT, alive=services.check_alive)
        except GraphQLError as exc:
            raise AssertionError(f"{exc}\n{services.log_tails()}") from None
        assert run.status == "FAILURE"
        deadline = time.monotonic() + ALERT_TIMEOUT
        while not push.received and time.monotonic() < deadline:
            services.check_alive()
            time.sleep(1)
        assert push.received, f"no alert arrived\n{services.log_tails()}"
        time.sleep(QUIET_SECONDS)
        received = list(push.received)
        tails = services.log_tails()
    finally:
        push.stop()
    assert len(received) == 1, [m["title"] for m in received]
    message = received[0]["message"]
    assert "a run of import_transactions failed" in received[0]["title"]
    assert "Reason: " in message and "budget" in message and f"Run: {run.run_id}" in message
    assert f"schedule {SCHEDULE}" in message
    assert PUSH_TOKEN not in tails
