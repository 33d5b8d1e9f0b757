"""Give each staged booked row a dedup key and mark it new or duplicate.

Key order (why: docs/design-notes.md, "Ids are not stable"), namespaced by account so ids from different accounts never collide:

    a<account_id>:n:<normalised_provider_transaction_id>   TrueLayer's stable id, when sent
    a<account_id>:p:<provider_transaction_id>              the bank's id, when sent
    a<account_id>:h:<sha256(account, booking date, signed amount, currency,
                            normalised description, occurrence index)>

`transaction_id` is never used: it may change between requests. The occurrence index counts rows
of identical content within the day (in response order), so two identical coffees stay two.
Ids too long for the 128-character key are replaced by their sha256 (`n#:` / `p#:`).

A row whose stable id is already in the ledger with a different amount, description, date or
currency is the bank's correction (Plaid's "modified"): it is marked `corrected` and the load
stage updates the ledger row, keeping the previous version in `transaction_history`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from dataclasses import asdict, dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from bank_pipeline.db.schema import staged_transactions, transactions
from bank_pipeline.ingest._db import (
    CHUNK_KEYS,
    as_date,
    as_days,
    chunks,
    copy_rows,
    fetch_day_filter,
    is_postgres,
    latest_booked_fetches,
    write_transaction,
)

MAX_KEY_CHARS = 128
_CENT = Decimal("0.0001")  # the ledger's precision: Numeric(18, 4)


@dataclass
class DedupStats:
    new: int = 0
    duplicate: int = 0  # of which within_batch were repeated in this batch, the rest already loaded
    within_batch: int = 0
    corrected: int = 0  # stable id already loaded, but the bank now sends other content

    def as_metadata(self) -> dict[str, int]:
        return asdict(self)


def _folded_description(text: str) -> str:
    """Casefolded, whitespace folded: the content hash's view of a description (enrichment's
    `normalise_description` strips far more, for merchant matching)."""
    return " ".join((text or "").casefold().split())


def _amount_text(amount) -> str:
    return str(Decimal(str(amount)).quantize(_CENT))


def content_fingerprint(booking_date: dt.date, amount, currency: str, description: str) -> str:
    """What makes two rows of one account 'the same content' for the hash key."""
    return "|".join(
        (
            as_date(booking_date).isoformat(),
            _amount_text(amount),
            currency.upper(),
            _folded_description(description),
        )
    )


def _id_key(account_id: int, prefix: str, value: str) -> str:
    key = f"a{account_id}:{prefix}:{value}"
    if len(key) <= MAX_KEY_CHARS:
        return key
    return f"a{account_id}:{prefix}#:{hashlib.sha256(value.encode()).hexdigest()}"


def hash_key(account_id: int, fingerprint: str, occurrence: int) -> str:
    digest = hashlib.sha256(f"{account_id}|{fingerprint}|{occurrence}".encode()).hexdigest()
    return f"a{account_id}:h:{digest}"


def dedup_keys(account_id: int, rows: list[dict]) -> list[str]:
    """Dedup keys of `rows` (dicts with the staged columns), in order. Rows must be in a stable
    order (booking date, then position in the response) for the occurrence index."""
    seen: Counter[str] = Counter()
    keys = []
    for row in rows:
        if row.get("normalised_provider_transaction_id"):
            keys.append(_id_key(account_id, "n", row["normalised_provider_transaction_id"]))
        elif row.get("provider_transaction_id"):
            keys.append(_id_key(account_id, "p", row["provider_transaction_id"]))
        else:
            fingerprint = content_fingerprint(
                row["booking_date"], row["amount"], row["currency"], row["description"]
            )
            keys.append(hash_key(account_id, fingerprint, seen[fingerprint]))
            seen[fingerprint] += 1
    return keys


def staged_booked_rows(conn: Connection, account_id: int, days: list[dt.date]) -> list[dict]:
    """Staged booked rows of the latest fetch of each day, in a stable order (one query)."""
    latest = latest_booked_fetches(conn, account_id, days)
    s = staged_transactions
    result = conn.execute(
        sa.select(
            s.c.raw_transaction_id,
            s.c.normalised_provider_transaction_id,
            s.c.provider_transaction_id,
            s.c.booking_date,
            s.c.amount,
            s.c.currency,
            s.c.description,
            s.c.dedup_key,
            s.c.dedup_status,
        )
        .where(
            s.c.account_id == account_id,
            s.c.status == "booked",
            fetch_day_filter(s.c.fetch_id, s.c.booking_date, latest),
        )
        .order_by(s.c.booking_date, s.c.raw_transaction_id)  # raw ids follow response positions
    )
    return [dict(row._mapping) for row in result]


def content(row: dict) -> tuple:
    """What a correction changes: (booking date, amount, currency, description)."""
    return (as_date(row["booking_date"]), _amount_text(row["amount"]), row["currency"], row["description"])


def _existing(conn: Connection, keys: list[str]) -> dict[str, tuple[int | None, tuple]]:
    """dedup_key → (raw_transaction_id, content) of the ledger rows among `keys` (one query per chunk)."""
    found: dict[str, tuple[int | None, tuple]] = {}
    t = transactions
    for chunk in chunks(sorted(set(keys)), CHUNK_KEYS):
        rows = conn.execute(
            sa.select(
                t.c.dedup_key, t.c.raw_transaction_id, t.c.booking_date, t.c.amount, t.c.currency, t.c.description
            ).where(t.c.dedup_key.in_(chunk))
        )
        found.update({r.dedup_key: (r.raw_transaction_id, content(r._mapping)) for r in rows})
    return found


def _write_keys(conn: Connection, updates: list[tuple[int, str, str]]) -> None:
    """Set (raw_transaction_id, dedup_key, dedup_status) on staged rows: COPY + one UPDATE on
    PostgreSQL, one executemany on SQLite."""
    if not updates:
        return
    if is_postgres(conn):
        conn.exec_driver_sql(
            "CREATE TEMP TABLE IF NOT EXISTS _dedup_keys "
            "(raw_transaction_id bigint PRIMARY KEY, dedup_key text, dedup_status text) ON COMMIT DELETE ROWS"
        )
        conn.exec_driver_sql("TRUNCATE _dedup_keys")
        copy_rows(conn, "_dedup_keys", ("raw_transaction_id", "dedup_key", "dedup_status"), updates)
        conn.exec_driver_sql(
            "UPDATE staged_transactions AS s SET dedup_key = k.dedup_key, dedup_status = k.dedup_status "
            "FROM _dedup_keys AS k WHERE s.raw_transaction_id = k.raw_transaction_id"
        )
        return
    conn.execute(
        sa.update(staged_transactions)
        .where(staged_transactions.c.raw_transaction_id == sa.bindparam("rid"))
        .values(dedup_key=sa.bindparam("key"), dedup_status=sa.bindparam("st")),
        [dict(rid=rid, key=key, st=status) for rid, key, status in updates],
    )


def dedup_account_days(engine: Engine, account_id: int, days: list[dt.date]) -> DedupStats:
    """Key the staged booked rows of `days` (latest fetch per day) and mark each new or duplicate,
    within the batch and against `transactions`. Pending rows are never keyed into the ledger.
    A row already loaded from this very staged row stays `new`, so reruns report the same counts."""
    days = as_days(days)
    stats = DedupStats()
    with engine.connect() as conn:
        rows = staged_booked_rows(conn, account_id, days)
        if not rows:
            return stats
        keys = dedup_keys(account_id, rows)
        existing = _existing(conn, keys)
    updates: list[tuple[int, str, str]] = []
    seen: set[str] = set()
    for row, key in zip(rows, keys, strict=True):
        rid = row["raw_transaction_id"]
        if key in seen:
            status = "duplicate"
            stats.within_batch += 1
        elif key not in existing:
            status = "new"
        elif existing[key][0] == rid:  # loaded (or corrected) from this very row: keep its verdict
            status = row["dedup_status"] if row["dedup_status"] in ("new", "corrected") else "new"
        elif existing[key][1] != content(row):
            status = "corrected"
        else:
            status = "duplicate"
        seen.add(key)
        if status == "new":
            stats.new += 1
        elif status == "corrected":
            stats.corrected += 1
        else:
            stats.duplicate += 1
        if row["dedup_key"] != key or row["dedup_status"] != status:
            updates.append((rid, key, status))
    if updates:
        with write_transaction(engine) as conn:
            _write_keys(conn, updates)
    return stats
