"""The pipeline running itself: signed webhooks → sensor → run (on a dagster-postgres instance),
one run per account at a time, and the bank's 4-unattended-calls-a-day rule respected.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from bank_pipeline import clock
from bank_pipeline.db import make_engine
from bank_pipeline.db.schema import enrichments, raw_fetches, transactions, webhook_events
from bank_pipeline.orchestration.resources import AppDatabase, default_resources
from bank_pipeline_tests.fixtures.pipeline import TODAY, Pipeline, expected_totals, settings_for

pytestmark = pytest.mark.slow


def _sensor_requests(instance, db_url) -> list[dg.RunRequest]:
    from bank_pipeline.orchestration.sensors import webhook_events_sensor

    with dg.build_sensor_context(instance=instance, resources={"database": AppDatabase(url=db_url), "truelayer": default_resources()["truelayer"]}) as context:
        result = webhook_events_sensor.evaluate_tick(context)
    return list(result.run_requests or [])


def test_signed_webhook_becomes_a_sensor_run_that_loads_and_enriches(db_url, simulator_factory, postgres_dagster_instance, tmp_path):
    from bank_pipeline.runner import import_job
    from bank_pipeline.simulator import FaultConfig, SimulatorConfig
    from bank_pipeline.webhooks import run_webhook_server_in_thread

    instance = postgres_dagster_instance
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    sim = simulator_factory(SimulatorConfig(seed=42, today=TODAY, faults=FaultConfig(unattended_limit=None)))
    settings = settings_for(db_url, sim, tmp_path / "home", unattended_daily_budget=1000)
    pipe = Pipeline(settings, sim, instance, "alice")
    pipe.run(TODAY - dt.timedelta(days=20), TODAY - dt.timedelta(days=3))
    current = next(a for a in pipe.accounts if a["account_type"] == "TRANSACTION")

    # Two days later the bank has news about the last three days.
    pipe.sim_admin("POST", "clock", json={"today": (TODAY + dt.timedelta(days=2)).isoformat()})
    first, last = TODAY - dt.timedelta(days=2), TODAY
    engine = make_engine(db_url)
    with run_webhook_server_in_thread(engine, jku_allowlist=[f"{sim.base_url}/_sim/jwks"]) as receiver:

        def send(**extra):
            body = {"url": receiver.url, "user": "alice", "account_id": current["provider_account_id"],
                    "type": "transactions_available", "from": first.isoformat(), "to": last.isoformat(), **extra}
            return pipe.sim_admin("POST", "webhooks/send", json=body).json()

        # Forged, wrong key, tampered body and stale: 401, nothing stored, no run.
        for tamper in ("signature", "wrong_key", "body"):
            assert send(tamper=tamper)["status_code"] == 401
        stale = (clock.now() - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert send(timestamp=stale)["status_code"] == 401
        unsigned = httpx.post(receiver.url, json={"event_id": "x", "event_type": "transactions_available"})
        assert unsigned.status_code == 401
        assert _sensor_requests(instance, db_url) == []

        delivered = send()
        assert delivered["status_code"] == 200
        # A replay of the same event is a no-op.
        assert send(event_id=delivered["event_id"])["status_code"] == 200
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(webhook_events)).scalar_one() == 1

    requests = _sensor_requests(instance, db_url)
    assert len(requests) == 1
    request = requests[0]
    assert request.tags["bank_pipeline/account"] == current["account_key"]
    assert request.tags["dagster/asset_partition_range_start"].endswith(first.isoformat())
    assert request.tags["dagster/asset_partition_range_end"].endswith(last.isoformat())
    assert _sensor_requests(instance, db_url) == []  # the event is processed: no second run

    # The run the sensor asked for (what the daemon would launch).
    result = import_job(settings).execute_in_process(instance=instance, tags=request.tags, run_id=None)
    assert result.success
    assert instance.get_run_by_id(result.run_id) is not None  # recorded in PostgreSQL

    truth = expected_totals(pipe.truth(first, last))
    assert pipe.ledger_totals(first, last)[current["provider_account_id"]] == truth[current["provider_account_id"]]
    with engine.connect() as conn:
        new = conn.execute(
            sa.select(sa.func.count()).select_from(transactions).where(
                transactions.c.account_id == current["id"], transactions.c.booking_date.between(first, last)
            )
        ).scalar_one()
        enriched = conn.execute(
            sa.select(sa.func.count()).select_from(
                enrichments.join(transactions, transactions.c.id == enrichments.c.transaction_id)
            ).where(transactions.c.account_id == current["id"], transactions.c.booking_date.between(first, last))
        ).scalar_one()
    assert new > 0 and enriched == new


def test_two_runs_for_one_account_never_overlap(pipeline_factory, db_url, tmp_path):
    from bank_pipeline.simulator import FaultConfig, SimulatorConfig

    faults = FaultConfig(unattended_limit=None, latency_ms=400)
    # One 60-day bank window, so each `import` is one run (runs are cut per window).
    pipe = pipeline_factory("alice", SimulatorConfig(seed=42, today=TODAY, faults=faults), unattended_daily_budget=1000,
                            max_window_days=60)
    key = next(a["account_key"] for a in pipe.accounts if a["account_type"] == "TRANSACTION")
    env = dict(os.environ)
    env.update(
        BANK_PIPELINE_DATABASE_URL=db_url, TRUELAYER_AUTH_URL=pipe.sim.auth_url, TRUELAYER_DATA_URL=pipe.sim.data_url,
        BANK_PIPELINE_HOME=str(pipe.settings.home), BANK_PIPELINE_FERNET_KEYS=",".join(pipe.settings.fernet_keys),
        BANK_PIPELINE_MAX_WINDOW_DAYS="60", BANK_PIPELINE_UNATTENDED_DAILY_BUDGET="1000",
        DAGSTER_HOME=str(tmp_path / "dagster-shared"),
        # Both runs go to the bank (the second would otherwise replay the days the first just fetched).
        BANK_PIPELINE_REFETCH_AFTER_HOURS="0",
    )
    os.makedirs(env["DAGSTER_HOME"])
    # The Dagster instance exists before the two runs race (as it does on any real deployment).
    subprocess.run([sys.executable, "-m", "bank_pipeline.cli", "partitions", "sync"], env=env, check=True)
    args = [sys.executable, "-m", "bank_pipeline.cli", "import", "--account", key,
            "--from", (TODAY - dt.timedelta(days=60)).isoformat(), "--to", (TODAY - dt.timedelta(days=1)).isoformat()]
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs[0][-2000:] + outputs[1][-2000:]

    engine = make_engine(db_url)
    with engine.connect() as conn:
        spans = {}
        for run_id, start in conn.execute(
            sa.select(raw_fetches.c.run_id, sa.func.min(raw_fetches.c.fetched_at)).group_by(raw_fetches.c.run_id)
        ):
            spans[run_id] = [start, None]
        for run_id, end in conn.execute(
            sa.select(enrichments.c.run_id, sa.func.max(enrichments.c.updated_at)).group_by(enrichments.c.run_id)
        ):
            if run_id in spans:
                spans[run_id][1] = end
    assert len(spans) == 2, spans
    (first_run, (a_start, a_end)), (_, (b_start, _)) = sorted(spans.items(), key=lambda kv: kv[1][0])
    assert a_end is not None, "the first run enriched what it loaded"
    assert b_start >= a_end, f"the second run fetched at {b_start} while the first ran until {a_end}"
    assert pipe.ledger_totals(TODAY - dt.timedelta(days=60), TODAY - dt.timedelta(days=1))[
        next(a["provider_account_id"] for a in pipe.accounts if a["account_key"] == key)
    ] == expected_totals(pipe.truth(TODAY - dt.timedelta(days=60), TODAY - dt.timedelta(days=1)))[
        next(a["provider_account_id"] for a in pipe.accounts if a["account_key"] == key)
    ]


@pytest.mark.date_sensitive
def test_unattended_budget_is_never_exceeded_against_the_4_a_day_rule(pipeline_factory):
    from bank_pipeline.runner import run_imports
    from bank_pipeline.simulator import FaultConfig, SimulatorConfig

    # The simulator enforces the bank's rule; the pipeline keeps its own budget of 4. Every run asks
    # the bank again for the look-back days it has just served (refetch_after_hours=0).
    pipe = pipeline_factory("alice", SimulatorConfig(seed=42, today=TODAY, faults=FaultConfig(unattended_limit=4)),
                            unattended_daily_budget=4, refetch_after_hours=0)
    key = next(a["account_key"] for a in pipe.accounts if a["account_type"] == "TRANSACTION")
    window = (TODAY - dt.timedelta(days=30), TODAY - dt.timedelta(days=1))
    outcomes = [run_imports(pipe.instance, pipe.settings, [key], *window)[0] for _ in range(4)]

    # Runs succeed while the budget lasts; then they fail with a clear message instead of calling.
    succeeded = [o for o in outcomes if o.success]
    spent = sum(o.metadata["fetched_transactions"]["api_calls"] for o in succeeded)
    assert succeeded and spent <= 4
    refused = [o for o in outcomes if not o.success]
    assert refused and outcomes.index(refused[0]) == len(succeeded), "once refused, every later run is refused"
    assert "unattended" in refused[0].error.lower() and "00:00 utc" in refused[0].error.lower()
    stats = pipe.sim_admin("GET", "stats").json()
    per_day = [n for days in stats["unattended"].values() for n in days.values()]
    assert max(per_day) <= 4
    assert "429" not in {str(s) for s in stats.get("statuses", {})}, "the bank never had to refuse a call"
    with pipe.engine.connect() as conn:
        failure = conn.execute(
            sa.text("select last_failure_message from accounts where account_key = :k"), {"k": key}
        ).scalar_one()
    assert "unattended" in failure.lower() or "budget" in failure.lower()
