"""A validly signed webhook whose dates are absurd (`"from": "0001-01-01"`) is clamped to the
partitions and planned apart: the account's genuine events keep their own small run. Signed by the
simulator, received over loopback HTTP, planned by the sensor; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from bank_pipeline.config import partition_start_date
from bank_pipeline.db import make_engine
from bank_pipeline.orchestration.partitions import range_tags
from bank_pipeline.orchestration.resources import AppDatabase, default_resources
from bank_pipeline.orchestration.sensors import webhook_events_sensor
from bank_pipeline.webhooks import run_webhook_server_in_thread
from bank_pipeline_tests.fixtures.clock import TODAY
from bank_pipeline_tests.fixtures.connections import sim_admin


def test_a_webhook_from_year_one_is_clamped_and_not_merged_with_genuine_events(alice_connection, tl_sim, db_url):
    """Before: the run planned for the account started at year 1 and carried the genuine event too."""
    current, savings = (next(a for a in alice_connection.accounts if a["account_type"] == kind)
                        for kind in ("TRANSACTION", "SAVINGS"))
    engine = make_engine(db_url)
    sent = {}
    with run_webhook_server_in_thread(engine, jku_allowlist=[f"{tl_sim.base_url}/_sim/jwks"]) as receiver:
        for name, account, first, last in [
            ("genuine", current, TODAY - dt.timedelta(days=2), TODAY),
            ("year-one", current, dt.date(1, 1, 1), TODAY),
            ("all-before-start", savings, dt.date(1, 1, 1), dt.date(1, 1, 2)),
        ]:
            body = {"url": receiver.url, "user": "alice", "account_id": account["provider_account_id"],
                    "from": first.isoformat(), "to": last.isoformat()}
            answer = sim_admin(tl_sim, "POST", "webhooks/send", json=body).json()
            assert answer["status_code"] == 200 and "stored" in answer["body"], answer
            sent[name] = answer["event_id"]
    resources = {"database": AppDatabase(url=db_url), "truelayer": default_resources()["truelayer"]}
    with dg.DagsterInstance.ephemeral() as instance, dg.build_sensor_context(
        instance=instance, resources=resources
    ) as context:
        requests = list(webhook_events_sensor.evaluate_tick(context).run_requests or [])
    engine.dispose()
    start = dt.date.fromisoformat(partition_start_date())
    planned = {request.run_key: {k: v for k, v in request.tags.items() if k not in ("bank_pipeline/trigger", "dagster/sensor_name")}
               for request in requests}
    assert planned == {
        f"webhook:{sent['genuine']}": range_tags(current["account_key"], TODAY - dt.timedelta(days=2), TODAY),
        f"webhook:{sent['year-one']}": range_tags(current["account_key"], start, TODAY),
        f"webhook:{sent['all-before-start']}": range_tags(savings["account_key"], start, start),
    }
