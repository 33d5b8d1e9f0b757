"""The alerts outbox: raise an alert once per cause, deliver it to every channel, retry later.

`raise_alert` inserts a row keyed by its cause; the same cause again (a retried run, another
partition, the next sensor tick, a second daemon) finds the row and adds nothing. `deliver_due`
sends the alerts not yet delivered everywhere, records per channel what went out, and leaves the
rest for a later call with a growing pause (1, 2, 4 … minutes, at most an hour). Nothing here
raises on a channel's failure: a failed alert is logged (redacted) and retried, and the pipeline's
runs never wait for it.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from bank_pipeline import clock
from bank_pipeline.alerts.channels import Channel, send
from bank_pipeline.db.schema import alerts

log = logging.getLogger(__name__)

FIRST_RETRY = dt.timedelta(minutes=1)
LONGEST_RETRY = dt.timedelta(hours=1)
GIVE_UP_AFTER = dt.timedelta(days=7)  # an alert older than a week is stale news: no longer sent


@dataclass(frozen=True)
class Alert:
    cause: str  # what makes it unique, e.g. "run-failed:<root run id>", "consent:3:2027-02-18:7d"
    kind: str  # run_failed | check_failed | consent | backfill_deferred
    title: str
    body: str


def raise_alert(engine: sa.Engine, alert: Alert) -> bool:
    """Record `alert` unless its cause is already recorded; True when it is new."""
    with engine.connect() as conn:
        if conn.execute(sa.select(alerts.c.id).where(alerts.c.cause == alert.cause)).first() is not None:
            return False
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.insert(alerts).values(
                    cause=alert.cause[:512],
                    kind=alert.kind,
                    title=alert.title,
                    body=alert.body,
                    delivered_to=[],
                    attempts=0,
                    created_at=clock.now(),
                )
            )
    except IntegrityError:  # another tick or daemon recorded the same cause first
        return False
    log.info("alert raised: %s", alert.title)
    return True


@dataclass(frozen=True)
class Delivery:
    sent: int  # alerts now delivered on every channel
    failed: int  # alerts left for a retry


def _pause(attempts: int) -> dt.timedelta:
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_RETRY)


def deliver_due(engine: sa.Engine, channels: list[Channel], *, force: bool = False) -> Delivery:
    """Send every undelivered alert whose retry time has come (`force`: all of them) on the
    channels that do not have it yet."""
    if not channels:
        return Delivery(0, 0)
    now = clock.now()
    due = sa.and_(
        alerts.c.sent_at.is_(None),
        alerts.c.created_at >= now - GIVE_UP_AFTER,
    )
    if not force:
        due = sa.and_(due, sa.or_(alerts.c.next_attempt_at.is_(None), alerts.c.next_attempt_at <= now))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(alerts).where(due).order_by(alerts.c.id)).mappings().all()
    sent = failed = 0
    for row in rows:
        delivered = list(row["delivered_to"] or [])
        errors = []
        for channel in channels:
            if channel.id in delivered:
                continue
            problem = send(channel, row["title"], row["body"], channels)
            if problem is None:
                delivered.append(channel.id)
            else:
                errors.append(f"{channel.shown}: {problem}")
        attempts = row["attempts"] + 1
        values: dict = dict(delivered_to=delivered, attempts=attempts)
        if errors:
            failed += 1
            values.update(last_error="; ".join(errors)[:2000], next_attempt_at=clock.now() + _pause(attempts))
            log.warning(
                "alert %r not delivered (attempt %d), retried from %s: %s",
                row["title"], attempts, f"{values['next_attempt_at']:%H:%M:%S} UTC", values["last_error"],
            )
        else:
            sent += 1
            values.update(sent_at=clock.now(), last_error=None, next_attempt_at=None)
            log.info("alert %r delivered on %d channel(s)", row["title"], len(delivered))
        with engine.begin() as conn:
            conn.execute(sa.update(alerts).where(alerts.c.id == row["id"]).values(**values))
    return Delivery(sent, failed)


def recorded_alerts(engine: sa.Engine) -> list[dict]:
    """Every recorded alert, oldest first (for `status`-like views and tests)."""
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(alerts).order_by(alerts.c.id)).mappings()]
