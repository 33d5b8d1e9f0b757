"""Load deduplicated staged rows into the ledger and replace the account's pending set.

Booked rows go in with one `INSERT … SELECT … ON CONFLICT (dedup_key) DO NOTHING` straight from
`staged_transactions` (the rows are already in the database: no round trip through Python), so
reruns, overlapping windows and concurrent runs never add a row twice, and the inserted count is
the statement's exact rowcount. The whole load is one transaction that starts by locking the
account row, so two loads of one account serialise instead of interleaving their pending sets.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.dialects import postgresql, sqlite

from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import accounts, pending_transactions, staged_transactions, transactions
from bank_pipeline.ingest._db import (
    as_date,
    as_days,
    bulk_insert,
    fetch_day_filter,
    is_postgres,
    latest_booked_fetches,
    latest_pending_fetch,
    write_transaction,
)
from bank_pipeline.ingest.dedup import dedup_account_days, normalise_description

# A pending row that matches a booked transaction of the account is dropped (it has booked):
# same direction and currency, booking date within ±PENDING_MATCH_DAYS, and either the amount within
# the tolerance or the same normalised description (pending amounts may change when they book).
PENDING_MATCH_DAYS = 7
PENDING_AMOUNT_TOLERANCE = Decimal("0.01")  # absolute
PENDING_AMOUNT_TOLERANCE_RATIO = Decimal("0.01")  # or 1% of the amount, whichever is larger

LEDGER_COLUMNS = (
    "dedup_key",
    "account_id",
    "transaction_id",
    "normalised_provider_transaction_id",
    "provider_transaction_id",
    "booking_date",
    "booked_at",
    "amount",
    "currency",
    "direction",
    "description",
    "merchant_name",
    "transaction_category",
    "transaction_classification",
    "running_balance",
    "running_balance_currency",
    "flags",
)


@dataclass
class LoadStats:
    inserted: int = 0  # booked rows added to `transactions`
    skipped: int = 0  # booked staged rows not added (duplicates, already loaded)
    pending_replaced: int = 0  # size of the account's new pending set
    pending_matched: int = 0  # pending rows dropped because they have booked

    def as_metadata(self) -> dict[str, int]:
        return asdict(self)


def _booked_selection(account_id: int, latest: dict[dt.date, int]):
    s = staged_transactions
    return sa.and_(
        s.c.account_id == account_id,
        s.c.status == "booked",
        fetch_day_filter(s.c.fetch_id, s.c.booking_date, latest),
    )


def _insert_booked(conn: Connection, account_id: int, latest: dict[dt.date, int], run_id, now) -> int:
    s = staged_transactions
    select = sa.select(
        *(s.c[name] for name in LEDGER_COLUMNS),
        s.c.raw_transaction_id,
        sa.literal(run_id, sa.String(64)).label("run_id"),
        sa.literal(now, transactions.c.loaded_at.type).label("loaded_at"),
    ).where(_booked_selection(account_id, latest), s.c.dedup_status == "new")
    dialect = postgresql if is_postgres(conn) else sqlite
    stmt = (
        dialect.insert(transactions)
        .from_select([*LEDGER_COLUMNS, "raw_transaction_id", "run_id", "loaded_at"], select)
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .execution_options(preserve_rowcount=True)  # SQLAlchemy keeps INSERT rowcounts only on request
    )
    return conn.execute(stmt).rowcount


def _tolerance(amount: Decimal) -> Decimal:
    return max(PENDING_AMOUNT_TOLERANCE, abs(amount) * PENDING_AMOUNT_TOLERANCE_RATIO)


def match_pending(pending: list[dict], booked: list[dict]) -> set[int]:
    """Indexes of `pending` rows that have booked, matching each booked row at most once.

    A pending row matches a booked row of the same currency and direction dated within
    ±PENDING_MATCH_DAYS whose amount is within tolerance or whose description is the same;
    the closest candidate (same description and amount first, then nearest date) wins.
    """
    used: set[int] = set()
    matched: set[int] = set()
    booked_desc = [normalise_description(b["description"]) for b in booked]
    for i, p in enumerate(pending):
        p_desc = normalise_description(p["description"])
        p_day = as_date(p["booking_date"])
        p_amount = Decimal(str(p["amount"]))
        best = None
        for j, b in enumerate(booked):
            if j in used or b["currency"] != p["currency"] or b["direction"] != p["direction"]:
                continue
            gap = abs((as_date(b["booking_date"]) - p_day).days)
            if gap > PENDING_MATCH_DAYS:
                continue
            diff = abs(Decimal(str(b["amount"])) - p_amount)
            same_amount = diff <= _tolerance(p_amount)
            same_desc = booked_desc[j] == p_desc
            if not (same_amount or same_desc):
                continue
            rank = (not (same_amount and same_desc), not same_desc, gap, diff)
            if best is None or rank < best[0]:
                best = (rank, j)
        if best is not None:
            used.add(best[1])
            matched.add(i)
    return matched


def _replace_pending(conn: Connection, account_id: int, fetch_id: int, now) -> tuple[int, int]:
    """Replace the account's pending set from staged rows of pending fetch `fetch_id`, leaving out
    rows that match a booked transaction. Returns (rows written, rows matched)."""
    s, t = staged_transactions, transactions
    pending = [
        dict(r._mapping)
        for r in conn.execute(
            sa.select(
                s.c.raw_transaction_id,
                s.c.transaction_id,
                s.c.booking_date,
                s.c.booked_at,
                s.c.amount,
                s.c.currency,
                s.c.direction,
                s.c.description,
                s.c.merchant_name,
            )
            .where(s.c.account_id == account_id, s.c.fetch_id == fetch_id, s.c.status == "pending")
            .order_by(s.c.raw_transaction_id)
        )
    ]
    conn.execute(sa.delete(pending_transactions).where(pending_transactions.c.account_id == account_id))
    if not pending:
        return 0, 0
    dates = [as_date(p["booking_date"]) for p in pending]
    span = dt.timedelta(days=PENDING_MATCH_DAYS)
    booked = [
        dict(r._mapping)
        for r in conn.execute(
            sa.select(t.c.booking_date, t.c.amount, t.c.currency, t.c.direction, t.c.description).where(
                t.c.account_id == account_id,
                t.c.booking_date.between(min(dates) - span, max(dates) + span),
            )
        )
    ]
    matched = match_pending(pending, booked)
    keep = [
        dict(p, account_id=account_id, booked_at=p["booked_at"], fetched_at=now)
        for i, p in enumerate(pending)
        if i not in matched
    ]
    bulk_insert(conn, pending_transactions, keep)
    return len(keep), len(matched)


def load_account_days(
    engine: Engine, account_id: int, days: list[dt.date], *, run_id: str | None
) -> LoadStats:
    """Insert the staged booked rows of `days` (latest fetch per day) into `transactions`, ignoring
    conflicts on dedup_key; replace the account's pending set from its latest pending fetch; stamp
    `accounts.last_synced_at`. Rows the dedup stage has not keyed yet are keyed first."""
    days = as_days(days)
    stats = LoadStats()
    s = staged_transactions
    with engine.connect() as conn:
        latest = latest_booked_fetches(conn, account_id, days)
        total, unkeyed = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(sa.case((s.c.dedup_key.is_(None), 1), else_=0)), 0),
            ).where(_booked_selection(account_id, latest))
        ).one()
    if unkeyed:
        dedup_account_days(engine, account_id, days)
    now = utcnow()
    with write_transaction(engine) as conn:
        # Lock the account row first: loads of one account serialise (PostgreSQL row lock; SQLite
        # already holds the database write lock from BEGIN IMMEDIATE).
        conn.execute(sa.update(accounts).where(accounts.c.id == account_id).values(last_synced_at=now))
        pending_fetch = latest_pending_fetch(conn, account_id)
        if latest:
            stats.inserted = _insert_booked(conn, account_id, latest, run_id, now)
        stats.skipped = int(total) - stats.inserted
        if pending_fetch is not None:
            stats.pending_replaced, stats.pending_matched = _replace_pending(
                conn, account_id, pending_fetch, now
            )
    return stats
