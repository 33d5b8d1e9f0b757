"""What `bank-pipeline status` shows: connections, consent expiry, accounts — never a token."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from bank_pipeline.connections.tokens import RECONNECT_HINT
from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import accounts, connections
from bank_pipeline.display import escaped
from bank_pipeline.timestamps import aware


def record_failure(conn: sa.Connection, run_id: str, message: str, *where: sa.ColumnElement[bool]) -> None:
    """Mark the accounts matching `where` as last failed by `run_id` (what `bank-pipeline status` shows)."""
    conn.execute(
        accounts.update()
        .where(*where)
        .values(last_failure_run_id=run_id, last_failure_message=message[:2000], last_failure_at=utcnow())
    )


def consent_warnings(engine: sa.Engine, within_days: int = 7) -> list[str]:
    """One line per connection whose consent ends within `within_days` days, has ended, or needs
    the user again."""
    now = utcnow()
    warnings = []
    with engine.connect() as conn:
        rows = conn.execute(sa.select(connections).order_by(connections.c.id)).all()
    for row in rows:
        name = f"connection {row.id} ({escaped(row.provider_name or row.provider_id or 'bank', 80)})"
        expires = aware(row.consent_expires_at)
        if row.status == "authorization_required":
            warnings.append(f"{name} needs authorising again: {RECONNECT_HINT}")
        elif row.status == "active" and expires is not None:
            if expires <= now:
                warnings.append(f"{name}: consent expired on {expires:%Y-%m-%d %H:%M} UTC; {RECONNECT_HINT}")
            elif expires - now <= dt.timedelta(days=within_days):
                days = (expires - now).days
                warnings.append(
                    f"{name}: consent expires on {expires:%Y-%m-%d %H:%M} UTC (in {days} day{'s' if days != 1 else ''}); "
                    f"run `bank-pipeline reconnect {row.id}` before then to keep importing"
                )
    return warnings


def status_summary(engine: sa.Engine, within_days: int = 7) -> dict:
    """Connections and their accounts for `bank-pipeline status` — never a token."""
    with engine.connect() as conn:
        conns = (
            conn.execute(
                sa.select(
                    connections.c.id,
                    connections.c.provider_id,
                    connections.c.provider_name,
                    connections.c.status,
                    connections.c.status_message,
                    connections.c.consent_expires_at,
                    connections.c.access_expires_at,
                    connections.c.scopes,
                    connections.c.created_at,
                    connections.c.updated_at,
                ).order_by(connections.c.id)
            )
            .mappings()
            .all()
        )
        accts = (
            conn.execute(
                sa.select(
                    accounts.c.id,
                    accounts.c.connection_id,
                    accounts.c.account_key,
                    accounts.c.kind,
                    accounts.c.display_name,
                    accounts.c.account_type,
                    accounts.c.currency,
                    accounts.c.active,
                    accounts.c.provider_id,
                    accounts.c.last_synced_at,
                    accounts.c.last_failure_at,
                    accounts.c.last_failure_message,
                    accounts.c.last_failure_run_id,
                ).order_by(accounts.c.connection_id, accounts.c.kind, accounts.c.id)
            )
            .mappings()
            .all()
        )
    return {
        "connections": [dict(row) for row in conns],
        "accounts": [dict(row) for row in accts],
        "warnings": consent_warnings(engine, within_days),
    }


def days_left_text(expires: dt.datetime | None, now: dt.datetime) -> str:
    """` (N days left)`, ` (last day)` or ` (expired)` after a consent's expiry; empty if unknown."""
    if expires is None:
        return ""
    if expires <= now:
        return " (expired)"
    days = (expires - now) // dt.timedelta(days=1)
    return " (last day)" if days == 0 else f" ({days} day{'s' if days != 1 else ''} left)"


def format_status(summary: dict) -> str:
    """Human-readable status text."""
    lines: list[str] = []
    if not summary["connections"]:
        return "no bank connected yet: run `bank-pipeline connect`"

    def when(value: dt.datetime | None) -> str:
        value = aware(value)
        return f"{value:%Y-%m-%d %H:%M} UTC" if value else "never"

    now = utcnow()
    # Names and messages quote the bank: escaped, so none can split a line, forge one or reorder it.
    for c in summary["connections"]:
        lines.append(
            f"connection {c['id']}: {escaped(c['provider_name'] or c['provider_id'] or '?', 80)} — {c['status']}"
            f"; consent expires {when(c['consent_expires_at']) if c['consent_expires_at'] else 'unknown'}"
            f"{days_left_text(aware(c['consent_expires_at']), now)}"
        )
        if c["status_message"]:
            lines.append(f"    {escaped(c['status_message'], 2000)}")
        for a in (a for a in summary["accounts"] if a["connection_id"] == c["id"]):
            flag = "" if a["active"] else " (no longer listed by the bank)"
            lines.append(
                f"  - {escaped(a['display_name'] or '?')} [{a['kind']}, {escaped(a['currency'] or '?')}] "
                f"key {a['account_key']}{flag}; last synced {when(a['last_synced_at'])}"
            )
            if a["last_failure_message"]:
                lines.append(
                    f"      last failure {when(a['last_failure_at'])}: {escaped(a['last_failure_message'], 2000)}"
                )
    for warning in summary["warnings"]:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)
