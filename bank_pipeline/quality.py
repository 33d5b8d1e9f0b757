"""Data-quality queries behind the asset checks: plain functions, testable without Dagster."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from itertools import groupby

import sqlalchemy as sa
from sqlalchemy import Engine

from bank_pipeline.db.schema import pending_transactions, quarantine, transactions


@dataclass(frozen=True)
class LedgerScope:
    """The account-days one run touched. A check after a run looks there only, so its cost follows
    the run's size, not the ledger's (None: the whole ledger)."""

    account_ids: tuple[int, ...]
    first: dt.date
    last: dt.date


def _within(query: sa.Select, account_column, date_column, scope: LedgerScope | None) -> sa.Select:
    if scope is None:
        return query
    return query.where(account_column.in_(scope.account_ids), date_column.between(scope.first, scope.last))


def duplicate_provider_ids(engine: Engine, scope: LedgerScope | None = None) -> list[dict]:
    """Ledger rows sharing a stable TrueLayer id within an account. The ledger's unique key is the
    dedup key, not this id: a bank that re-sends a booked row with another date or amount under
    the same stable id, loaded as new instead of corrected, shows up here."""
    t = transactions
    query = _within(
        sa.select(
            t.c.account_id, t.c.normalised_provider_transaction_id, sa.func.count().label("copies"),
            sa.func.min(t.c.booking_date).label("first_day"), sa.func.max(t.c.booking_date).label("last_day"),
        ),
        t.c.account_id, t.c.booking_date, scope,
    )
    query = (
        query.where(t.c.normalised_provider_transaction_id.is_not(None))
        .group_by(t.c.account_id, t.c.normalised_provider_transaction_id)
        .having(sa.func.count() > 1)
        .limit(50)
    )
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def _chain(start: Decimal, rows: list, tolerance: Decimal, pending: list[Decimal]) -> tuple[Decimal, list]:
    """Order one day's rows so each balance = previous + amount; return the final balance and the
    rows that could not be chained (each a missing transaction or a gap). A still-pending
    transaction the bank already counted in its balance explains one gap of its amount (each
    pending amount is used once)."""
    left, balance = list(rows), start
    while left:
        nxt = next((r for r in left if abs(balance + r[1] - r[2]) <= tolerance), None)
        if nxt is None:
            match = next(
                ((p, r) for p in pending for r in left if abs(balance + p + r[1] - r[2]) <= tolerance), None
            )
            if match is None:
                return left[-1][2], left
            pending.remove(match[0])
            nxt = match[1]
        left.remove(nxt)
        balance = nxt[2]
    return balance, []


def running_balance_gaps(
    engine: Engine, tolerance: Decimal = Decimal("0.005"), scope: LedgerScope | None = None
) -> list[dict]:
    """Places where running balances do not add up: a transaction is missing between them.

    Rows are walked day by day; a difference equal to a transaction still pending is not a gap. Within a day, posting order is unknowable from timestamps (banks
    stamp many rows with a bare date at midnight beside others with exact times), so any order
    that chains is accepted. Only rows
    where the bank sent a running balance are compared; the first row of an account (or of the
    scope) starts it.
    """
    t = transactions
    walked = scope
    if scope is not None:  # start from the last day before the scope: a gap on its first day shows
        with engine.connect() as conn:
            before = conn.execute(
                sa.select(sa.func.max(t.c.booking_date)).where(
                    t.c.account_id.in_(scope.account_ids), t.c.booking_date < scope.first,
                    t.c.running_balance.is_not(None),
                )
            ).scalar_one()
        walked = LedgerScope(scope.account_ids, before or scope.first, scope.last)
    query = _within(
        sa.select(t.c.account_id, t.c.id, t.c.booked_at, t.c.booking_date, t.c.amount, t.c.running_balance),
        t.c.account_id, t.c.booking_date, walked,
    )
    query = (
        query.where(t.c.running_balance.is_not(None))
        .order_by(t.c.account_id, t.c.booking_date, t.c.booked_at, t.c.id)
    )
    gaps: list[dict] = []
    with engine.connect() as conn:
        pending_by_account: dict[int, list[Decimal]] = {}
        for account_id, amount in conn.execute(sa.select(pending_transactions.c.account_id, pending_transactions.c.amount)):
            pending_by_account.setdefault(account_id, []).append(Decimal(str(amount)))
        rows = [
            (r.account_id, r.booked_at, r.booking_date, r.id, Decimal(str(r.amount)), Decimal(str(r.running_balance)))
            for r in conn.execute(query)
        ]
    for account_id, account_rows in groupby(rows, key=lambda r: r[0]):
        balance = None
        for booking_date, group in groupby(account_rows, key=lambda r: r[2]):
            items = [(r[3], r[4], r[5]) for r in group]
            if balance is None:  # the first day: any row whose predecessor isn't in the group starts it
                balances = {b for _, _, b in items}
                starts = [i for i in items if (i[2] - i[1]) not in balances] or items[:1]
                balance = starts[0][2] - starts[0][1]
            balance, unchained = _chain(balance, items, tolerance, pending_by_account.setdefault(account_id, []))
            if scope is not None and booking_date < scope.first:
                continue  # the day before the scope only sets the opening balance
            gaps.extend(
                {
                    "account_id": account_id,
                    "transaction_id": tid,
                    "booking_date": booking_date.isoformat(),
                    "bank_balance": str(bank_balance),
                }
                for tid, _amount, bank_balance in unchained
            )
    return gaps


def unexplained_quarantine(engine: Engine, scope: LedgerScope | None = None) -> int:
    """Quarantined rows nobody has resolved or explained yet."""
    return sum(unexplained_quarantine_by_day(engine, scope).values())


def unexplained_quarantine_by_day(engine: Engine, scope: LedgerScope | None = None) -> dict[tuple[int, dt.date], int]:
    """Those rows counted per (account id, day they were fetched for)."""
    q = quarantine
    query = _within(
        sa.select(q.c.account_id, q.c.partition_date, sa.func.count()).where(q.c.resolved_at.is_(None)),
        q.c.account_id, q.c.partition_date, scope,
    ).group_by(q.c.account_id, q.c.partition_date)
    with engine.connect() as conn:
        return {(account_id, day): n for account_id, day, n in conn.execute(query)}
