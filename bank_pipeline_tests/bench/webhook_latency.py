"""A signed webhook to enriched rows in the ledger, through the real services: the simulator signs
and sends a "transactions available" webhook for one past day of alice's current account, the
webhook receiver verifies and stores it, `dagster-daemon` (webhook sensor, run queue) launches the
run, and the bench polls the application database until that day's transactions are there and
enriched, as many as the bank has. Ten webhooks, one after the other (each once the previous one's
run has ended, as webhooks arrive on a quiet pipeline), each for a day not imported yet; prints
each latency (from the receiver's answer), the median, the 90th percentile and each run's time
in the queue and running.

    python -m bank_pipeline_tests.bench webhook_latency
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

TARGET_MEDIAN_SECONDS = 10.0
WEBHOOKS = 10
TIMEOUT_SECONDS = 180


def _enriched(engine, account_id: int, day: dt.date) -> tuple[int, int]:
    from bank_pipeline.db.schema import enrichments, transactions

    with engine.connect() as conn:
        loaded = conn.execute(sa.select(sa.func.count()).select_from(transactions).where(
            transactions.c.account_id == account_id, transactions.c.booking_date == day)).scalar_one()
        enriched = conn.execute(sa.select(sa.func.count()).select_from(
            enrichments.join(transactions, transactions.c.id == enrichments.c.transaction_id)).where(
            transactions.c.account_id == account_id, transactions.c.booking_date == day)).scalar_one()
    return loaded, enriched


def _wait_until_idle(services) -> None:
    """Until no run is queued or running (the webhook's run finishes its checks after the rows are in)."""
    import dagster as dg

    deadline = time.monotonic() + TIMEOUT_SECONDS
    busy = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
            dg.DagsterRunStatus.STARTED]
    with services.instance() as instance:
        while instance.get_runs_count(dg.RunsFilter(statuses=busy)) and time.monotonic() < deadline:
            time.sleep(0.5)


def run(args) -> None:
    from bank_pipeline import clock
    from bank_pipeline.connections.flow import connect
    from bank_pipeline.db import make_engine, migrate
    from bank_pipeline.orchestration.partitions import sync_account_partitions
    from bank_pipeline.simulator import FaultConfig, SimulatorConfig, run_in_thread
    from bank_pipeline.webhooks import run_webhook_server_in_thread
    from bank_pipeline_tests.dagster_services import dagster_services
    from bank_pipeline_tests.fixtures.pipeline import settings_for

    count = 3 if args.quick else WEBHOOKS
    today = clock.today_utc()
    with tempfile.TemporaryDirectory() as tmp, run_in_thread(
        SimulatorConfig(seed=42, faults=FaultConfig(unattended_limit=None)), host="127.0.0.1", port=0
    ) as sim:
        tmp_path = Path(tmp)
        db_url = f"sqlite:///{tmp_path / 'app.db'}"
        engine = make_engine(db_url)
        migrate(engine)
        settings = dataclasses.replace(settings_for(db_url, sim, tmp_path / "home"), unattended_daily_budget=1000)
        accounts = connect(settings, simulator_user="alice", open_browser=False, timeout=60).accounts
        current = next(a for a in accounts if a.get("account_type") == "TRANSACTION")
        truth = httpx.get(f"{sim.base_url}/_sim/ground_truth", timeout=30, params={
            "user": "alice", "from": (today - dt.timedelta(days=60)).isoformat(), "to": (today - dt.timedelta(days=2)).isoformat(),
        }).json()["accounts"][current["provider_account_id"]]
        by_day: dict[str, int] = {}
        for row in truth["transactions"]:
            by_day[row["booking_date"]] = by_day.get(row["booking_date"], 0) + 1
        days = sorted((dt.date.fromisoformat(d) for d in by_day), reverse=True)[:count]
        keys = sorted(a["account_key"] for a in accounts)
        print(f"--- {count} webhooks for alice's {current['account_key']}, days {days[-1]}..{days[0]} "
              f"({sum(by_day[d.isoformat()] for d in days)} transactions)", flush=True)

        def register(instance) -> None:  # before the daemon starts: no initial backfill runs
            sync_account_partitions(instance, keys)

        latencies = []
        with dagster_services(settings, tmp_path / "services", setup=register) as services, \
                run_webhook_server_in_thread(engine, jku_allowlist=[f"{sim.base_url}/_sim/jwks"]) as receiver:
            for day in days:
                expected = by_day[day.isoformat()]
                sent = httpx.post(f"{sim.base_url}/_sim/webhooks/send", timeout=30, json={
                    "url": receiver.url, "user": "alice", "account_id": current["provider_account_id"],
                    "type": "transactions_available", "from": day.isoformat(), "to": day.isoformat(),
                }).json()
                accepted = time.perf_counter()
                if sent["status_code"] != 200:
                    raise SystemExit(f"webhook refused: {sent}")
                while True:
                    loaded, enriched = _enriched(engine, current["id"], day)
                    if loaded >= expected and enriched >= loaded:
                        break
                    services.check_alive()
                    if time.perf_counter() - accepted > TIMEOUT_SECONDS:
                        raise SystemExit(f"{day}: {loaded}/{expected} loaded, {enriched} enriched after "
                                         f"{TIMEOUT_SECONDS}s\n{services.log_tails()}")
                    time.sleep(0.2)
                latencies.append(time.perf_counter() - accepted)
                print(f"    {day}: {loaded} transactions enriched in the ledger {latencies[-1]:.1f}s after the "
                      "webhook was accepted", flush=True)
                _wait_until_idle(services)  # each webhook arrives on a quiet pipeline, as they do
            with services.instance() as instance:
                import dagster as dg

                records = instance.get_run_records(dg.RunsFilter(tags={"bank_pipeline/trigger": "webhook"}))
                statuses = sorted({record.dagster_run.status.value for record in records})
                for record in sorted(records, key=lambda r: r.create_timestamp):
                    created = record.create_timestamp.timestamp()
                    ran = f"{record.end_time - record.start_time:.1f}s" if record.end_time and record.start_time else "-"
                    began = f"{record.start_time - created:.1f}s" if record.start_time else "-"
                    print(f"      run {record.dagster_run.run_id[:8]}: started {began} after the sensor created it, "
                          f"ran {ran} ({record.dagster_run.status.value})", flush=True)
    median = statistics.median(latencies)
    p90 = statistics.quantiles(latencies, n=10, method="inclusive")[-1] if len(latencies) >= 2 else latencies[0]
    print(f"    webhook -> enriched rows: median {median:.1f}s, p90 {p90:.1f}s, max {max(latencies):.1f}s "
          f"({len(records)} webhook runs: {statuses})", flush=True)
    met = median <= TARGET_MEDIAN_SECONDS and statuses == ["SUCCESS"]
    print(f"    target (median <= {TARGET_MEDIAN_SECONDS:.0f}s, every run succeeded): {'met' if met else 'NOT met'}",
          flush=True)
