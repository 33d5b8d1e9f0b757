"""Database-backed limits: the unattended-call budget and per-account leases.

Banks allow about four unattended calls (no `X-PSU-IP`) per account per day. `UnattendedBudget`
counts them in `api_call_budget` per UTC day with one atomic upsert, so concurrent runs (threads,
processes, machines sharing the database) can never reserve past the limit. `account_lease` makes
sure two runs never import the same account at once.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import Engine

from bank_pipeline.db import utcnow
from bank_pipeline.db.dialect import insert
from bank_pipeline.db.schema import account_leases, accounts, api_call_budget
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.timestamps import aware, parse_iso

DEFAULT_DAILY_LIMIT = 4


class BudgetExhausted(BankPipelineError):
    """No unattended calls left today for an account."""

    def __init__(
        self, message: str, *, account_id: int, used: int, limit: int, resets_at: dt.datetime
    ) -> None:
        super().__init__(message)
        self.account_id = account_id
        self.used = used
        self.limit = limit
        self.resets_at = resets_at


class LeaseTimeout(BankPipelineError):
    """Another run holds the account's lease and did not release it in time."""


def _aware(value: dt.datetime | str | None) -> dt.datetime | None:
    return aware(parse_iso(value) if isinstance(value, str) else value)


def _describe_account(conn, account_id: int) -> str:
    row = conn.execute(
        sa.select(accounts.c.account_key, accounts.c.display_name).where(accounts.c.id == account_id)
    ).first()
    if row is None:
        return f"account {account_id}"
    key, name = row
    return f"account {account_id} ({key}{', ' + name if name else ''})"


class UnattendedBudget:
    """Unattended TrueLayer calls per account per UTC day, capped at `daily_limit`."""

    def __init__(
        self,
        engine: Engine,
        daily_limit: int = DEFAULT_DAILY_LIMIT,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.engine = engine
        self.daily_limit = daily_limit
        self.clock = clock or utcnow

    def today(self) -> dt.date:
        now = self.clock()
        return (now.astimezone(dt.timezone.utc) if now.tzinfo else now).date()

    def used(self, account_id: int) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(api_call_budget.c.unattended_calls).where(
                    api_call_budget.c.account_id == account_id, api_call_budget.c.day == self.today()
                )
            ).scalar()
        return int(value or 0)

    def remaining(self, account_id: int) -> int:
        return max(0, self.daily_limit - self.used(account_id))

    def reserve(self, account_id: int, calls: int = 1, *, keep: int = 0) -> int:
        """Reserve `calls` unattended calls for today; returns the calls used today including these.

        `keep` calls stay untouched for others (a backfill keeps some for the daily import).
        One atomic statement: `INSERT … ON CONFLICT DO UPDATE SET n = n + calls WHERE n + calls <=
        limit - keep RETURNING n` — no row back means the budget would be exceeded: BudgetExhausted.
        """
        if calls < 1:
            raise ValueError(f"calls must be at least 1, got {calls}")
        day = self.today()
        b = api_call_budget
        used = None
        allowed = self.daily_limit - max(0, keep)
        with self.engine.begin() as conn:
            if calls <= allowed:
                stmt = insert(self.engine, b).values(account_id=account_id, day=day, unattended_calls=calls)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["account_id", "day"],
                    set_={"unattended_calls": b.c.unattended_calls + calls},
                    where=b.c.unattended_calls + calls <= allowed,
                ).returning(b.c.unattended_calls)
                used = conn.execute(stmt).scalar()
            if used is not None:
                return int(used)
            current = conn.execute(
                sa.select(b.c.unattended_calls).where(b.c.account_id == account_id, b.c.day == day)
            ).scalar()
            who = _describe_account(conn, account_id)
        resets_at = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=dt.timezone.utc)
        kept = f" ({keep} kept for the daily import)" if keep > 0 else ""
        raise BudgetExhausted(
            f"unattended TrueLayer call budget exhausted for {who}: {int(current or 0)} of {self.daily_limit} "
            f"calls used on {day.isoformat()} (UTC){kept}, {calls} more requested; the budget resets at 00:00 UTC "
            f"({resets_at.isoformat()})",
            account_id=account_id,
            used=int(current or 0),
            limit=self.daily_limit,
            resets_at=resets_at,
        )


@dataclass
class Lease:
    """A held `account_leases` row: `holder` may import `account_id` until `expires_at`."""

    account_id: int
    holder: str
    expires_at: dt.datetime


_HOST = socket.gethostname()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _release_if_holder_died(engine: Engine, account_id: int) -> bool:
    """Drop a lease whose holder process on this host is gone (a killed run), so a rerun needn't wait."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(account_leases.c.holder, account_leases.c.host, account_leases.c.pid).where(
                account_leases.c.account_id == account_id
            )
        ).first()
    if row is None or row.host != _HOST or row.pid is None or _pid_alive(row.pid):
        return False
    with engine.begin() as conn:
        conn.execute(
            sa.delete(account_leases).where(
                account_leases.c.account_id == account_id,
                account_leases.c.holder == row.holder,
                account_leases.c.pid == row.pid,
            )
        )
    return True


def _try_acquire(
    engine: Engine, account_id: int, holder: str, now: dt.datetime, expires: dt.datetime
) -> bool:
    """Take the lease if free, expired, or already ours: one atomic upsert."""
    lease = account_leases
    stmt = (
        insert(engine, lease).values(account_id=account_id, holder=holder, acquired_at=now, expires_at=expires, host=_HOST, pid=os.getpid())
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["account_id"],
        set_={"holder": holder, "acquired_at": now, "expires_at": expires, "host": _HOST, "pid": os.getpid()},
        where=sa.or_(lease.c.expires_at <= now, lease.c.holder == holder),
    ).returning(lease.c.holder)
    with engine.begin() as conn:
        return conn.execute(stmt).scalar() == holder


def acquire_lease(
    engine: Engine,
    account_id: int,
    holder: str,
    ttl_seconds: float = 3600,
    wait_seconds: float = 600,
    poll: float = 0.5,
    clock: Callable[[], dt.datetime] | None = None,
) -> Lease:
    """Take `account_leases[account_id]` for `holder`, waiting (polling) while another live holder has
    an unexpired lease; raise LeaseTimeout after `wait_seconds`. Expired leases, and leases whose
    holder process on this host has died, are taken over; the same holder may re-take its own."""
    clock = clock or utcnow
    deadline = time.monotonic() + wait_seconds
    while True:
        now = clock()
        expires = now + dt.timedelta(seconds=ttl_seconds)
        if _try_acquire(engine, account_id, holder, now, expires):
            return Lease(account_id, holder, expires)
        if _release_if_holder_died(engine, account_id):
            continue
        if time.monotonic() >= deadline:
            with engine.connect() as conn:
                row = conn.execute(
                    sa.select(account_leases.c.holder, account_leases.c.expires_at).where(
                        account_leases.c.account_id == account_id
                    )
                ).first()
                who = _describe_account(conn, account_id)
            other, until = (row[0], _aware(row[1])) if row else ("another run", None)
            until_text = f" until {until.isoformat()}" if until else ""
            raise LeaseTimeout(
                f"{who} is being imported by {other} (lease held{until_text}); gave up waiting after "
                f"{wait_seconds:g}s — wait for that run to finish, or retry after the lease expires"
            )
        time.sleep(min(poll, max(0.01, deadline - time.monotonic())))


def release_leases(engine: Engine, holder: str, account_id: int | None = None) -> int:
    """Release `holder`'s leases (one account's, or all of them): at the end of a run, or after it failed."""
    condition = account_leases.c.holder == holder
    if account_id is not None:
        condition = sa.and_(condition, account_leases.c.account_id == account_id)
    with engine.begin() as conn:
        return conn.execute(sa.delete(account_leases).where(condition)).rowcount


@contextmanager
def account_lease(engine: Engine, account_id: int, holder: str, **options) -> Iterator[Lease]:
    """Hold the account's lease for the block (`options`: those of `acquire_lease`); released on exit."""
    lease = acquire_lease(engine, account_id, holder, **options)
    try:
        yield lease
    finally:
        release_leases(engine, holder, account_id)
