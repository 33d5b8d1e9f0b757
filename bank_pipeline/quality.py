"""Data-quality queries behind the asset checks: plain functions, testable without Dagster."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import Engine

from bank_pipeline.db.schema import quarantine, transactions


def duplicate_provider_ids(engine: Engine) -> list[dict]:
    """Ledger rows sharing a stable TrueLayer id within an account (the dedup key should prevent it)."""
    t = transactions
    query = (
        sa.select(t.c.account_id, t.c.normalised_provider_transaction_id, sa.func.count().label("copies"))
        .where(t.c.normalised_provider_transaction_id.is_not(None))
        .group_by(t.c.account_id, t.c.normalised_provider_transaction_id)
        .having(sa.func.count() > 1)
        .limit(50)
    )
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def running_balance_gaps(engine: Engine, tolerance: Decimal = Decimal("0.005")) -> list[dict]:
    """Consecutive ledger rows whose running balances do not add up: a transaction is missing.

    Rows are taken in posting order (instant, then load order); only rows where the bank sent a
    running balance are compared.
    """
    t = transactions
    ordered = (
        sa.select(
            t.c.account_id,
            t.c.id,
            t.c.booking_date,
            t.c.amount,
            t.c.running_balance,
            sa.func.lag(t.c.running_balance)
            .over(partition_by=t.c.account_id, order_by=(t.c.booked_at, t.c.id))
            .label("previous_balance"),
        )
        .where(t.c.running_balance.is_not(None))
        .subquery()
    )
    query = sa.select(ordered).where(ordered.c.previous_balance.is_not(None))
    gaps = []
    with engine.connect() as conn:
        for row in conn.execute(query):
            expected = Decimal(row.previous_balance) + Decimal(row.amount)
            if abs(expected - Decimal(row.running_balance)) > tolerance:
                gaps.append(
                    {
                        "account_id": row.account_id,
                        "transaction_id": row.id,
                        "booking_date": row.booking_date.isoformat(),
                        "expected_balance": str(expected),
                        "bank_balance": str(row.running_balance),
                    }
                )
    return gaps


def unexplained_quarantine(engine: Engine) -> int:
    """Quarantined rows nobody has resolved or explained yet."""
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(quarantine).where(quarantine.c.resolved_at.is_(None))
        ).scalar_one()
