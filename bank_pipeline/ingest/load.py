"""Load deduplicated staged rows into the ledger and replace the account's pending set.

Booked rows go in with one `INSERT … SELECT … ON CONFLICT (dedup_key) DO NOTHING` straight from
`staged_transactions` (the rows are already in the database: no round trip through Python), so
reruns, overlapping windows and concurrent runs never add a row twice, and the inserted count is
the statement's exact rowcount. The whole load is one transaction that starts by locking the
account row, so two loads of one account serialise instead of interleaving their pending sets.

Rows the dedup stage marked `corrected` update their ledger row in place; the previous version
goes to `transaction_history` and the enrichment is dropped so the enrich stage redoes it (a
user's override stays). Pending rows are matched to booked ones one-to-one and conservatively
(`match_pending`); the rest stay pending, flagged `stale` once older than `PendingPolicy.stale_days`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass
from decimal import Decimal
from difflib import SequenceMatcher

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from bank_pipeline.db import utcnow
from bank_pipeline.db.dialect import insert
from bank_pipeline.db.schema import (
    accounts,
    category_overrides,
    enrichments,
    pending_transactions,
    staged_transactions,
    transaction_history,
    transactions,
)
from bank_pipeline.ingest._db import (
    as_date,
    as_days,
    bulk_insert,
    fetch_day_filter,
    insert_ignore,
    latest_booked_fetches,
    latest_pending_fetch,
    write_transaction,
)
from bank_pipeline.ingest.dedup import dedup_account_days


@dataclass(frozen=True)
class PendingPolicy:
    """When a pending row counts as booked, and when it is stale.

    A pending row matches a booked transaction of the same account, currency and direction booked
    on or after the pending date and at most `match_days` later, whose amount is within
    max(`amount_tolerance`, `amount_ratio` × |pending amount|) (a tip or an FX rate can change it:
    a 12.5% service charge is within the default 20%), and whose description, normalised, is at
    least `min_similarity` alike. A pending row older than `stale_days` is flagged stale.
    """

    match_days: int = 4
    amount_tolerance: Decimal = Decimal("0.01")
    amount_ratio: Decimal = Decimal("0.20")
    min_similarity: float = 0.8
    stale_days: int = 10

    def tolerance(self, amount: Decimal) -> Decimal:
        return max(self.amount_tolerance, abs(amount) * self.amount_ratio)


DEFAULT_PENDING_POLICY = PendingPolicy()

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
    corrected: int = 0  # ledger rows updated to the bank's corrected version
    skipped: int = 0  # booked staged rows not added (duplicates, already loaded)
    pending_replaced: int = 0  # size of the account's new pending set
    pending_matched: int = 0  # pending rows dropped because they have booked
    pending_stale: int = 0  # of the pending set, rows older than PendingPolicy.stale_days
    currency_mismatch: int = 0  # ledger rows of these days in a currency other than the account's

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
    stmt = (
        insert(conn, transactions)
        .from_select([*LEDGER_COLUMNS, "raw_transaction_id", "run_id", "loaded_at"], select)
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .execution_options(preserve_rowcount=True)  # SQLAlchemy keeps INSERT rowcounts only on request
    )
    return conn.execute(stmt).rowcount


_CORRECTED_COLUMNS = [c for c in LEDGER_COLUMNS if c not in ("dedup_key", "account_id", "transaction_id")]
_HISTORY_COLUMNS = (
    "booking_date", "booked_at", "amount", "currency", "direction", "description", "merchant_name",
    "raw_transaction_id",
)


def _apply_corrections(conn: Connection, account_id: int, latest: dict[dt.date, int], run_id, now) -> int:
    """Update ledger rows from staged rows marked `corrected` (once: a rerun finds the ledger row
    already at that raw row); keep the previous version; drop the enrichment unless overridden."""
    s, t = staged_transactions, transactions
    rows = conn.execute(
        sa.select(
            t.c.id.label("ledger_id"),
            *(t.c[c].label(f"old_{c}") for c in _HISTORY_COLUMNS),
            *(s.c[c] for c in _CORRECTED_COLUMNS),
            s.c.raw_transaction_id,
        )
        .select_from(s.join(t, t.c.dedup_key == s.c.dedup_key))
        .where(
            _booked_selection(account_id, latest),
            s.c.dedup_status == "corrected",
            t.c.account_id == account_id,
            sa.or_(t.c.raw_transaction_id.is_(None), t.c.raw_transaction_id != s.c.raw_transaction_id),
        )
        .order_by(s.c.raw_transaction_id)
    ).all()
    if not rows:
        return 0
    history = [
        dict(
            transaction_id=r.ledger_id,
            **{c: getattr(r, f"old_{c}") for c in _HISTORY_COLUMNS},
            replaced_by_raw_transaction_id=r.raw_transaction_id,
            run_id=run_id,
            replaced_at=now,
        )
        for r in rows
    ]
    insert_ignore(conn, transaction_history, history, ["transaction_id", "replaced_by_raw_transaction_id"])
    for r in rows:
        values = {c: getattr(r, c) for c in _CORRECTED_COLUMNS}
        conn.execute(
            sa.update(t)
            .where(t.c.id == r.ledger_id)
            .values(**values, raw_transaction_id=r.raw_transaction_id, run_id=run_id, corrected_at=now)
        )
    ids = [r.ledger_id for r in rows]
    overridden = sa.select(category_overrides.c.transaction_id)
    conn.execute(
        sa.delete(enrichments).where(enrichments.c.transaction_id.in_(ids), enrichments.c.transaction_id.not_in(overridden))
    )
    return len(rows)


_NON_WORD = re.compile(r"[^0-9a-z]+")


def similar_description(a: str, b: str) -> float:
    """0..1: how alike two descriptions are once case, punctuation and spacing are ignored."""
    x, y = _NON_WORD.sub(" ", (a or "").casefold()).strip(), _NON_WORD.sub(" ", (b or "").casefold()).strip()
    if x == y:
        return 1.0
    return SequenceMatcher(None, x, y, autojunk=False).ratio()


def match_pending(
    pending: list[dict], booked: list[dict], policy: PendingPolicy = DEFAULT_PENDING_POLICY
) -> set[int]:
    """Indexes of `pending` rows that have booked, each matched to a different booked row.

    A pair qualifies when currency and direction agree, the booked date is on or after the pending
    date and at most `policy.match_days` later, the amounts are within `policy.tolerance`, and the
    descriptions are at least `policy.min_similarity` alike. Pairs are taken best first (closest
    amount, then nearest date, then most similar description), so one pending row never takes
    another's booking; a pending row with no qualifying booking stays pending.
    """
    candidates = []
    for i, p in enumerate(pending):
        p_day = as_date(p["booking_date"])
        p_amount = Decimal(str(p["amount"]))
        limit = policy.tolerance(p_amount)
        for j, b in enumerate(booked):
            if b["currency"] != p["currency"] or b["direction"] != p["direction"]:
                continue
            gap = (as_date(b["booking_date"]) - p_day).days
            if not 0 <= gap <= policy.match_days:
                continue
            diff = abs(Decimal(str(b["amount"])) - p_amount)
            if diff > limit:
                continue
            similarity = similar_description(p["description"], b["description"])
            if similarity < policy.min_similarity:
                continue
            candidates.append((diff, gap, -similarity, i, j))
    candidates.sort()
    used_p: set[int] = set()
    used_b: set[int] = set()
    for *_, i, j in candidates:
        if i not in used_p and j not in used_b:
            used_p.add(i)
            used_b.add(j)
    return used_p


def _replace_pending(
    conn: Connection, account_id: int, fetch_id: int, now, policy: PendingPolicy
) -> tuple[int, int, int]:
    """Replace the account's pending set from staged rows of pending fetch `fetch_id`, leaving out
    rows that match a booked transaction. Returns (rows written, rows matched, rows stale)."""
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
        return 0, 0, 0
    dates = [as_date(p["booking_date"]) for p in pending]
    span = dt.timedelta(days=policy.match_days)
    booked = [
        dict(r._mapping)
        for r in conn.execute(
            sa.select(t.c.booking_date, t.c.amount, t.c.currency, t.c.direction, t.c.description).where(
                t.c.account_id == account_id,
                t.c.booking_date.between(min(dates), max(dates) + span),
            )
        )
    ]
    matched = match_pending(pending, booked, policy)
    stale_before = now.date() - dt.timedelta(days=policy.stale_days)
    keep = [
        dict(p, account_id=account_id, fetched_at=now, stale=as_date(p["booking_date"]) < stale_before)
        for i, p in enumerate(pending)
        if i not in matched
    ]
    bulk_insert(conn, pending_transactions, keep)
    return len(keep), len(matched), sum(1 for p in keep if p["stale"])


def load_account_days(
    engine: Engine,
    account_id: int,
    days: list[dt.date],
    *,
    run_id: str | None,
    pending_policy: PendingPolicy = DEFAULT_PENDING_POLICY,
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
            stats.corrected = _apply_corrections(conn, account_id, latest, run_id, now)
            stats.inserted = _insert_booked(conn, account_id, latest, run_id, now)
        stats.skipped = int(total) - stats.inserted - stats.corrected
        if pending_fetch is not None:
            stats.pending_replaced, stats.pending_matched, stats.pending_stale = _replace_pending(
                conn, account_id, pending_fetch, now, pending_policy
            )
        if days:
            t = transactions
            stats.currency_mismatch = conn.execute(
                sa.select(sa.func.count()).where(
                    t.c.account_id == account_id,
                    t.c.booking_date.between(days[0], days[-1]),
                    t.c.flags.like("%currency_mismatch%"),
                )
            ).scalar_one()
    return stats
