"""`bank-pipeline alerts test|check|list`: try the channels of BANK_PIPELINE_ALERT_URLS, raise the
consent alerts due and deliver what is pending (what the daemon's `alerts_sensor` does each
minute), and list the recorded alerts — channels shown redacted, never their secrets."""

from __future__ import annotations

import argparse

from bank_pipeline import clock
from bank_pipeline.cli_args import add_actions
from bank_pipeline.config import Settings
from bank_pipeline.db import open_database


def _channels():
    from bank_pipeline.alerts.channels import channels_from_env
    from bank_pipeline.errors import BankPipelineError

    channels = channels_from_env()
    if not channels:
        raise BankPipelineError("no alert channel: set BANK_PIPELINE_ALERT_URLS (see docs/consent-and-alerts.md)")
    return channels


def _test_cmd(args: argparse.Namespace) -> int:
    from bank_pipeline.alerts.channels import send

    channels = _channels()
    failed = 0
    for channel in channels:
        problem = send(channel, "bank-pipeline: test alert", "Alerts from bank-pipeline reach you here.", channels)
        print(f"{channel.shown}: {'sent' if problem is None else 'NOT sent: ' + problem}")
        failed += problem is not None
    return 1 if failed else 0


def _check_cmd(args: argparse.Namespace) -> int:
    from bank_pipeline.alerts.causes import consent_alerts
    from bank_pipeline.alerts.outbox import deliver_due, raise_alert

    channels = _channels()
    engine = open_database(Settings.from_env().database_url)
    try:
        raised = sum(raise_alert(engine, alert) for alert in consent_alerts(engine, clock.now()))
        delivery = deliver_due(engine, channels, force=True)
    finally:
        engine.dispose()
    print(f"{raised} new alert(s); {delivery.sent} delivered, {delivery.failed} left to retry")
    return 1 if delivery.failed else 0


def _list_cmd(args: argparse.Namespace) -> int:
    from bank_pipeline.alerts.outbox import recorded_alerts

    engine = open_database(Settings.from_env().database_url)
    try:
        rows = recorded_alerts(engine)
    finally:
        engine.dispose()
    for row in rows:
        state = "delivered" if row["sent_at"] else f"pending ({row['attempts']} attempt(s))"
        print(f"{row['created_at']:%Y-%m-%d %H:%M} {state:<24} {row['title']}")
        if row["last_error"] and not row["sent_at"]:
            print(f"    last error: {row['last_error']}")
    if not rows:
        print("no alert recorded")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("alerts", help="try the alert channels, send pending alerts, list them")
    actions = add_actions(p)
    actions.add_parser("test", help="send a test alert on every channel").set_defaults(func=_test_cmd)
    actions.add_parser(
        "check", help="raise the consent alerts due and deliver every pending alert now"
    ).set_defaults(func=_check_cmd)
    actions.add_parser("list", help="the recorded alerts and their delivery").set_defaults(func=_list_cmd)


__all__ = ["register"]
