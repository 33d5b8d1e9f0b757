"""Alerts through the project's own Dagster sensors to real receivers on loopback: consent warnings
once each at 14/7/1 days and at expiry, a failed run once with its reason, an ended consent once
however many runs fail on it, and a receiver that is down gets the alert when it is back. Channel
secrets never reach the logs or the database."""

from __future__ import annotations

import datetime as dt
import logging

import dagster as dg
import pytest
import sqlalchemy as sa

from bank_pipeline.alerts.channels import parse_channels
from bank_pipeline.alerts.outbox import recorded_alerts
from bank_pipeline.config import ConfigError
from bank_pipeline.connections import format_status, status_summary
from bank_pipeline.db.schema import connections
from bank_pipeline.orchestration.alerting import alert_on_failed_checks, alert_on_run_failure, alerts_sensor
from bank_pipeline.orchestration.resources import AlertChannels, AppDatabase
from bank_pipeline.timestamps import aware
from bank_pipeline_tests.alert_receivers import PUSH_TOKEN, SMTP_PASSWORD, PushReceiver, SmtpReceiver
from bank_pipeline_tests.fixtures.clock import TODAY

DAY = TODAY - dt.timedelta(days=1)
SECRETS = (PUSH_TOKEN, SMTP_PASSWORD)


def _resources(db_url: str, *urls: str) -> dict:
    return {"database": AppDatabase(url=db_url), "alert_channels": AlertChannels(urls=" ".join(urls))}


def _tick(db_url: str, *urls: str):
    """One evaluation of the periodic alerts sensor, as the daemon would run it."""
    return alerts_sensor(dg.build_sensor_context(resources=_resources(db_url, *urls)))


def _failed_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE])))


def _on_failure(instance: dg.DagsterInstance, run: dg.DagsterRun, db_url: str, *urls: str) -> None:
    """The run-failure sensor evaluated for `run`, as the daemon would."""
    record = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records[0]
    context = dg.build_run_status_sensor_context(
        sensor_name=alert_on_run_failure.name,
        dagster_event=record.event_log_entry.dagster_event,
        dagster_instance=instance,
        dagster_run=run,
        resources=_resources(db_url, *urls),
    ).for_run_failure()
    alert_on_run_failure(context)


def _database_text(engine: sa.Engine) -> str:
    return repr(recorded_alerts(engine))


def test_consent_warnings_fire_once_each_at_14_7_1_days_and_at_expiry(
    connect_settings, alice_connection, engine, move_clock
):
    push = PushReceiver().start()
    try:
        with engine.connect() as conn:
            expires = aware(conn.execute(sa.select(connections.c.consent_expires_at)).scalar_one())
        # (days before expiry, alerts received by then): each tick runs twice, as ticks repeat.
        for days_before, expected in [(20, 0), (13.9, 1), (13, 1), (8, 1), (6.9, 2), (3, 2), (0.9, 3), (0.2, 3),
                                      (-0.1, 4), (-5, 4)]:
            move_clock(expires - dt.timedelta(days=days_before))
            _tick(connect_settings.database_url, push.url)
            _tick(connect_settings.database_url, push.url)
            assert len(push.received) == expected, (days_before, [m["title"] for m in push.received])
            if days_before == 13:
                assert "(12 days left)" in format_status(status_summary(engine))
        titles = [m["title"] for m in push.received]
        assert "ends in 13 days" in titles[0] and "ends in 6 days" in titles[1]
        assert "ends within a day" in titles[2] and "needs you" in titles[3]
        assert all("bank-pipeline reconnect" in m["message"] for m in push.received)
        assert "(expired)" in format_status(status_summary(engine))
    finally:
        push.stop()


@pytest.mark.slow
def test_a_failed_run_alerts_once_by_email_and_push_with_its_reason(pipeline_factory, db_url, caplog):
    caplog.set_level(logging.DEBUG)
    p = pipeline_factory("alice", unattended_daily_budget=0)  # every unattended fetch is refused
    smtp, push = SmtpReceiver().start(), PushReceiver().start()
    try:
        p.run(DAY, DAY, [p.keys[0]], require_success=False)
        [run] = _failed_runs(p.instance)
        for _ in range(2):  # the sensor seeing the same failure again (a restarted daemon)
            _on_failure(p.instance, run, db_url, smtp.url, push.url)
            _tick(db_url, smtp.url, push.url)
    finally:
        smtp.stop()
        push.stop()
    assert len(smtp.messages) == 1 and len(push.received) == 1
    mail = smtp.messages[0].decode()
    assert "Subject: bank-pipeline: a run of import_transactions failed" in mail
    assert "budget" in push.received[0]["message"] and "Reason:" in push.received[0]["message"]
    assert DAY.isoformat() in push.received[0]["message"]  # the partitions
    [alert] = recorded_alerts(p.engine)
    assert alert["sent_at"] is not None and len(alert["delivered_to"]) == 2
    for secret in SECRETS:
        assert secret not in caplog.text and secret not in _database_text(p.engine)


@pytest.mark.slow
def test_a_receiver_that_is_down_fails_nothing_and_gets_the_alert_when_back(
    pipeline_factory, db_url, move_clock, caplog
):
    caplog.set_level(logging.DEBUG)
    p = pipeline_factory("alice", unattended_daily_budget=0)
    push = PushReceiver()  # not started: connection refused
    p.run(DAY, DAY, [p.keys[0]], require_success=False)
    [run] = _failed_runs(p.instance)
    _on_failure(p.instance, run, db_url, push.url)  # does not raise
    [alert] = recorded_alerts(p.engine)
    assert alert["sent_at"] is None and alert["attempts"] == 1 and alert["last_error"]
    assert "alerts:****@127.0.0.1" in alert["last_error"]
    push.start()
    try:
        _tick(db_url, push.url)  # before its retry time: left alone
        assert push.received == []
        move_clock(dt.datetime.combine(TODAY, dt.time(12, 5), dt.timezone.utc))
        _tick(db_url, push.url)
        _tick(db_url, push.url)
    finally:
        push.stop()
    assert len(push.received) == 1 and "Reason:" in push.received[0]["message"]
    assert recorded_alerts(p.engine)[0]["sent_at"] is not None
    assert "not delivered" in caplog.text
    for secret in SECRETS:
        assert secret not in caplog.text and secret not in _database_text(p.engine)


@pytest.mark.slow
def test_an_expired_connection_alerts_once_however_many_runs_fail(pipeline_factory, db_url):
    p = pipeline_factory("alice")
    push = PushReceiver().start()
    try:
        p.sim_admin("POST", "consent/expire", json={"user": "alice"})
        for first in (DAY - dt.timedelta(days=1), DAY):  # two daily imports, both failing
            p.run(first, first, [p.keys[0]], require_success=False)
        runs = _failed_runs(p.instance)
        assert len(runs) == 2
        for run in runs:
            _on_failure(p.instance, run, db_url, push.url)
            _tick(db_url, push.url)
    finally:
        push.stop()
    assert len(push.received) == 1, [m["title"] for m in push.received]
    assert "needs you" in push.received[0]["title"] and "bank-pipeline reconnect" in push.received[0]["message"]


def test_a_bad_channel_url_is_one_line_without_the_secret():
    with pytest.raises(ConfigError) as caught:
        parse_channels((f"nosuchscheme://user:{SMTP_PASSWORD}@host",))
    assert "BANK_PIPELINE_ALERT_URLS: channel 1" in str(caught.value) and SMTP_PASSWORD not in str(caught.value)
    [channel] = parse_channels((PushReceiver(9).url,))
    assert PUSH_TOKEN not in channel.shown and PUSH_TOKEN not in repr(channel)


def test_a_failed_ledger_check_alerts_once_per_check_and_run(sqlite_url):
    """A range run whose checks find a gap and an unexplained quarantined row (each reported per
    partition too) gives one alert per failing check, however many partitions and ticks."""
    from bank_pipeline.db import make_engine
    from bank_pipeline.db.engine import utcnow
    from bank_pipeline.db.schema import accounts, quarantine
    from bank_pipeline.orchestration.checks import ledger_checks
    from bank_pipeline.orchestration.partitions import (
        RANGE_END_TAG,
        RANGE_START_TAG,
        partition_key,
        transaction_partitions,
    )
    from bank_pipeline_tests.test_quality import POSTINGS, _ledger

    engine = make_engine(sqlite_url)
    _ledger(engine, POSTINGS, skip={3})  # a gap on 2026-03-02
    with engine.begin() as conn:
        account_id = conn.execute(sa.select(accounts.c.id)).scalar_one()
        for day in (1, 3):
            conn.execute(quarantine.insert().values(account_id=account_id, partition_date=dt.date(2026, 3, day),
                                                    reason="bad", payload="{}", created_at=utcnow()))

    @dg.asset(name="loaded_transactions", partitions_def=transaction_partitions,
              backfill_policy=dg.BackfillPolicy.single_run())
    def stand_in() -> None:
        """Stands in for the loaded asset: the checks read the ledger, not the asset's output."""

    push = PushReceiver().start()
    try:
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions("accounts", ["aq1"])
            result = dg.materialize(
                [stand_in, *ledger_checks], instance=instance, resources={"database": AppDatabase(url=sqlite_url)},
                tags={RANGE_START_TAG: partition_key("aq1", dt.date(2026, 3, 1)),
                      RANGE_END_TAG: partition_key("aq1", dt.date(2026, 3, 3))},
            )
            run = instance.get_run_by_id(result.run_id)
            [record] = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS).records
            for _ in range(2):  # the sensor seeing the run again (a restarted daemon)
                alert_on_failed_checks(dg.build_run_status_sensor_context(
                    sensor_name=alert_on_failed_checks.name, dagster_event=record.event_log_entry.dagster_event,
                    dagster_instance=instance, dagster_run=run, resources=_resources(sqlite_url, push.url),
                ))
                _tick(sqlite_url, push.url)
    finally:
        push.stop()
    titles = sorted(m["title"] for m in push.received)
    assert titles == [
        "bank-pipeline: the ledger check quarantine_explained warns",
        "bank-pipeline: the ledger check running_balances_continuous warns",
    ], titles
    assert any("First failing partition: aq1|2026-03-02" in m["message"] for m in push.received)


def test_the_alerts_commands_try_the_channels_and_list_without_secrets(sqlite_url, tmp_path, monkeypatch, capsys):
    from bank_pipeline.cli import main

    push = PushReceiver()
    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("BANK_PIPELINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BANK_PIPELINE_ALERT_URLS", push.url)
    assert main(["alerts", "test"]) == 1  # the receiver is down
    assert f"json://alerts:****@127.0.0.1:{push.port}: NOT sent" in capsys.readouterr().out
    push.start()
    try:
        assert main(["alerts", "test"]) == 0
        assert main(["alerts", "check"]) == 0
        assert main(["alerts", "list"]) == 0
    finally:
        push.stop()
    out = capsys.readouterr().out
    assert len(push.received) == 1 and "sent" in out and "0 new alert(s)" in out and "no alert recorded" in out
    monkeypatch.setenv("BANK_PIPELINE_ALERT_URLS", f"nosuch://x:{SMTP_PASSWORD}@host")
    assert main(["alerts", "test"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and SMTP_PASSWORD not in captured.err + captured.out
