"""A correction applies at once: after the user recategorises a transaction, or rejects or links
a transfer, the months of spending the changed rows fall in (and, for transfers, the recurring
payments) are recomputed from the ledger there and then, and the command says how much changed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import Engine

from bank_pipeline.analytics import monthly
from bank_pipeline.analytics.recurring import update_recurring
from bank_pipeline.db.schema import enrichments, monthly_spending, transactions


@dataclass(frozen=True)
class Applied:
    relabelled: int  # of the rows the correction covers, those whose category changed
    months: int  # account-months of spending recomputed
    recurring: int  # recurring payments listed after detection ran again
    recurring_changed: int  # patterns new or gone


def labels(engine: Engine, ids: Iterable[int]) -> dict[int, tuple[str | None, str | None]]:
    """{transaction id: (category, subcategory)} of these rows (None, None: not enriched)."""
    ids = list(ids)
    with engine.connect() as conn:
        found = {
            r.id: (r.category, r.subcategory)
            for r in conn.execute(
                sa.select(transactions.c.id, enrichments.c.category, enrichments.c.subcategory)
                .select_from(transactions.outerjoin(enrichments, enrichments.c.transaction_id == transactions.c.id))
                .where(transactions.c.id.in_(ids))
            )
        }
    return {i: found.get(i, (None, None)) for i in ids}


def apply_after(engine: Engine, before: dict[int, tuple[str | None, str | None]], run_id: str) -> Applied:
    """Recompute what reads the rows of `before` (their labels before the correction)."""
    after = labels(engine, before)
    months = refresh_months(engine, before, run_id)
    stats = update_recurring(engine, run_id=run_id)
    return Applied(
        relabelled=sum(after[i] != before[i] for i in before),
        months=months,
        recurring=stats.patterns,
        recurring_changed=stats.new + stats.removed,
    )


def refresh_months(engine: Engine, ids: Iterable[int], run_id: str, *, only_stored: bool = False) -> int:
    """Store again the `monthly_spending` account-months these rows fall in (`only_stored`: those
    already stored, i.e. computed before); returns how many."""
    ids = list(ids)
    if not ids:
        return 0
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(transactions.c.account_id, transactions.c.booking_date).where(transactions.c.id.in_(ids))
        ).all()
        stored = {
            (a, m) for a, m in conn.execute(sa.select(monthly_spending.c.account_id, monthly_spending.c.month).distinct())
        } if only_stored else None
    account_months: dict[int, set] = {}
    for account_id, day in rows:
        month = monthly.month_start(day)
        if stored is None or (account_id, month) in stored:
            account_months.setdefault(account_id, set()).add(month)
    monthly.refresh(engine, account_months, run_id=run_id)
    return sum(len(m) for m in account_months.values())


def summary(applied: Applied) -> str:
    return (f"{applied.relabelled} transaction(s) relabelled; {applied.months} month(s) of spending recomputed; "
            f"recurring payments detected again: {applied.recurring} listed ({applied.recurring_changed} new or gone)")
