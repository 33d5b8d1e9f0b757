"""What deserves an alert, each with the cause that makes it unique (see `outbox.raise_alert`).

- a consent about to end: at 14, 7 and 1 day(s) before and at expiry, once each — the cause names
  the connection, the expiry instant and the stage, so a renewed consent starts afresh;
- a failed run: the cause is its backfill, else its root run (a retried run is the same cause).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from bank_pipeline.alerts.outbox import Alert
from bank_pipeline.db.schema import connections
from bank_pipeline.timestamps import aware

WARN_DAYS = (14, 7, 1)
RECONNECT = "Run `bank-pipeline reconnect {id}` to renew it (same accounts, history kept)."


def consent_stage(expires: dt.datetime, now: dt.datetime) -> str | None:
    """`expired`, `1d`, `7d`, `14d` (the nearest threshold passed) or None (more than 14 days left)."""
    if expires <= now:
        return "expired"
    for days in sorted(WARN_DAYS):
        if expires - now <= dt.timedelta(days=days):
            return f"{days}d"
    return None


def days_left(expires: dt.datetime, now: dt.datetime) -> int:
    """Whole days until `expires` (0 on its last day, negative after)."""
    return (expires - now) // dt.timedelta(days=1)


def consent_alerts(engine: sa.Engine, now: dt.datetime) -> list[Alert]:
    """The consent alerts due at `now` for every live connection."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(connections).where(connections.c.status != "revoked").order_by(connections.c.id)
        ).all()
    found = []
    for row in rows:
        expires = aware(row.consent_expires_at)
        name = f"connection {row.id} ({row.provider_name or row.provider_id or 'bank'})"
        if row.status == "authorization_required":
            stage = "expired"
        elif expires is None:
            continue
        else:
            stage = consent_stage(expires, now)
            if stage is None:
                continue
        when = f"{expires:%Y-%m-%dT%H:%M}" if expires else "unknown"
        if stage == "expired":
            title = f"bank-pipeline: the bank needs you — {name} stopped importing"
            body = (
                f"The consent of {name} has ended"
                + (f" ({expires:%Y-%m-%d %H:%M} UTC)" if expires else "")
                + "; its daily imports fail until it is renewed. "
                + RECONNECT.format(id=row.id)
            )
        else:
            left = days_left(expires, now)
            within = "within a day" if left == 0 else f"in {left} day{'s' if left != 1 else ''}"
            title = f"bank-pipeline: {name} consent ends {within}"
            body = (
                f"The consent of {name} ends on {expires:%Y-%m-%d %H:%M} UTC. UK rules let the bank "
                "share your data for 90 days after you last confirmed. " + RECONNECT.format(id=row.id)
            )
        found.append(Alert(f"consent:{row.id}:{when}:{stage}", "consent", title, body))
    return found


def needs_the_user(engine: sa.Engine, account_keys: list[str]) -> bool:
    """True when every connection behind these accounts needs the user again (consent ended): a
    run that failed for them is told by the consent's own alert, once, not once per run."""
    from bank_pipeline.db.schema import accounts

    if not account_keys:
        return False
    with engine.connect() as conn:
        statuses = set(
            conn.execute(
                sa.select(connections.c.status)
                .join(accounts, accounts.c.connection_id == connections.c.id)
                .where(accounts.c.account_key.in_(account_keys))
            ).scalars()
        )
    return statuses == {"authorization_required"}


def run_failure_alert(
    run_id: str,
    root_run_id: str | None,
    job_name: str,
    reason: str,
    *,
    backfill_id: str | None = None,
    partitions: str | None = None,
    trigger: str | None = None,
) -> Alert:
    """The alert of a failed run: once per backfill, else per root run (retries share it)."""
    cause = f"run-failed:backfill:{backfill_id}" if backfill_id else f"run-failed:{root_run_id or run_id}"
    lines = [f"Reason: {reason}"]
    if partitions:
        lines.append(f"Partitions: {partitions}")
    if trigger:
        lines.append(f"Started by: {trigger}")
    lines.append(f"Run: {run_id}")
    lines.append("`bank-pipeline status` shows the accounts affected; the Dagster UI shows the run.")
    what = f"backfill {backfill_id}" if backfill_id else f"run of {job_name}"
    return Alert(cause, "run_failed", f"bank-pipeline: a {what} failed", "\n".join(lines))


def check_failure_alert(
    asset: str, check: str, run_id: str, root_run_id: str | None, *, warning: bool, partition: str | None,
    description: str | None,
) -> Alert:
    """The alert of a failed asset check: once per check and run (its partitions, its retries)."""
    lines = [description or f"The check {check} found a problem in {asset}."]
    if partition:
        lines.append(f"First failing partition: {partition}")
    lines.append(f"Run: {run_id}")
    lines.append("The asset's Checks tab in the Dagster UI lists every failing partition.")
    what = "warns" if warning else "failed"
    return Alert(
        f"check-failed:{asset}:{check}:{root_run_id or run_id}",
        "check_failed",
        f"bank-pipeline: the ledger check {check} {what}",
        "\n".join(lines),
    )
