"""Ledger load throughput on PostgreSQL: `load_account_days` end to end vs a raw psycopg COPY.

Generates N realistic staged (deduplicated) rows for a few accounts over a year in a fresh schema,
times `load_account_days` for every account (rows/s), then COPYs the same rows into a bare copy of
`transactions` (no indexes or constraints) with psycopg 3 and prints both and the ratio.
Target: load ≥ 0.5 × raw COPY. Uses BANK_PIPELINE_TEST_POSTGRES_URL or
postgresql://postgres@127.0.0.1:5432/test; the schema is dropped afterwards.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import time
import uuid
from decimal import Decimal
from urllib.parse import quote

import sqlalchemy as sa

from bank_pipeline.db import make_engine, migrate, utcnow
from bank_pipeline.db.schema import accounts, connections, raw_fetches, transactions
from bank_pipeline.ingest._db import copy_rows
from bank_pipeline.ingest.dedup import dedup_keys
from bank_pipeline.ingest.load import LEDGER_COLUMNS, load_account_days
from bank_pipeline.truelayer.windows import split_windows

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
ACCOUNTS = 4
FIRST, LAST = dt.date(2025, 11, 21), dt.date(2026, 11, 20)
TARGET_RATIO = 0.5

MERCHANTS = [
    ("TESCO STORES 3297", "Tesco", "PURCHASE", ["Shopping", "Groceries"], (-120, -3)),
    ("SAINSBURYS SMRKT STORE 128", "Sainsburys", "PURCHASE", ["Shopping", "Groceries"], (-90, -4)),
    ("PRET A MANGER 123", "Pret A Manger", "PURCHASE", ["Food & Dining", "Coffee shops"], (-12, -2)),
    ("COSTA COFFEE 43011", "Costa Coffee", "PURCHASE", ["Food & Dining", "Coffee shops"], (-7, -2)),
    ("TFL TRAVEL CH", "Transport for London", "PURCHASE", ["Transport", "Public transport"], (-9, -2)),
    ("AMAZON.CO.UK*2R4TT6", "Amazon", "PURCHASE", ["Shopping", "General"], (-150, -5)),
    ("NETFLIX.COM", "Netflix", "DIRECT_DEBIT", ["Entertainment", "Streaming"], (-18, -5)),
    ("OCTOPUS ENERGY", "Octopus Energy", "DIRECT_DEBIT", ["Bills and Utilities", "Energy"], (-180, -40)),
    ("ACME LTD SALARY", None, "CREDIT", ["Income", "Salary"], (1800, 4200)),
    ("FASTER PAYMENT J SMITH", None, "TRANSFER", [], (-300, 300)),
]


def _generate(n: int, account_ids: list[int], fetch_ids: dict[int, list[tuple[int, dt.date, dt.date]]]):
    """(raw rows, staged rows) for `n` booked transactions spread over the accounts and the year."""
    rng = random.Random(7)
    span = (LAST - FIRST).days + 1
    raw_rows, staged_rows = [], []
    per_account = n // len(account_ids)
    rid = 0
    for account_id in account_ids:
        rows = []
        for i in range(per_account):
            day = FIRST + dt.timedelta(days=rng.randrange(span))
            desc, merchant, category, classification, (lo, hi) = rng.choice(MERCHANTS)
            amount = Decimal(rng.randint(lo * 100, hi * 100)) / 100 or Decimal("-1.00")
            stamp = dt.datetime.combine(
                day, dt.time(rng.randrange(24), rng.randrange(60)), tzinfo=dt.timezone.utc
            )
            npti = f"txn-{hashlib.sha1(f'{account_id}-{i}'.encode()).hexdigest()[:17]}" if i % 10 else None
            rows.append(
                dict(
                    transaction_id=uuid.UUID(int=rng.getrandbits(128)).hex,
                    normalised_provider_transaction_id=npti,
                    provider_transaction_id=f"{rng.getrandbits(40):x}" if i % 20 else None,
                    booking_date=day,
                    booked_at=stamp,
                    amount=amount,
                    currency="GBP",
                    direction="debit" if amount < 0 else "credit",
                    description=desc,
                    merchant_name=merchant,
                    transaction_category=category,
                    transaction_classification=classification,
                    running_balance=Decimal(rng.randint(0, 500000)) / 100,
                    running_balance_currency="GBP",
                )
            )
        rows.sort(key=lambda r: (r["booking_date"], r["booked_at"]))
        keys = dedup_keys(account_id, rows)
        positions: dict[int, int] = {}
        for row, key in zip(rows, keys, strict=True):
            rid += 1
            fetch_id = next(f for f, a, b in fetch_ids[account_id] if a <= row["booking_date"] <= b)
            position = positions.get(fetch_id, 0)
            positions[fetch_id] = position + 1
            payload = {
                "transaction_id": row["transaction_id"],
                "timestamp": row["booked_at"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                "description": row["description"],
                "amount": float(row["amount"]),
                "currency": "GBP",
                "transaction_type": "DEBIT" if row["amount"] < 0 else "CREDIT",
                "transaction_category": row["transaction_category"],
                "transaction_classification": row["transaction_classification"],
                "running_balance": {"amount": float(row["running_balance"]), "currency": "GBP"},
            }
            if row["normalised_provider_transaction_id"]:
                payload["normalised_provider_transaction_id"] = row["normalised_provider_transaction_id"]
            raw_rows.append(
                (rid, fetch_id, account_id, "booked", position, row["booking_date"], json.dumps(payload))
            )
            staged_rows.append(
                dict(row, raw_transaction_id=rid, fetch_id=fetch_id, account_id=account_id, dedup_key=key)
            )
    return raw_rows, staged_rows


STAGED_COPY_COLUMNS = (
    "raw_transaction_id",
    "fetch_id",
    "account_id",
    "status",
    *[c for c in LEDGER_COLUMNS if c not in ("dedup_key", "account_id")],
    "dedup_key",
    "dedup_status",
)


def _staged_tuple(r: dict) -> tuple:
    return (
        r["raw_transaction_id"],
        r["fetch_id"],
        r["account_id"],
        "booked",
        *[
            json.dumps(r[c]) if c == "transaction_classification" else r[c]
            for c in LEDGER_COLUMNS
            if c not in ("dedup_key", "account_id")
        ],
        r["dedup_key"],
        "new",
    )


def _setup(engine, n: int):
    now = utcnow()
    with engine.begin() as conn:
        connection_id = conn.execute(
            connections.insert()
            .values(provider_id="ob-bench", created_at=now, updated_at=now)
            .returning(connections.c.id)
        ).scalar_one()
        account_ids = []
        for i in range(ACCOUNTS):
            account_ids.append(
                conn.execute(
                    accounts.insert()
                    .values(
                        account_key=f"abench{i:06d}",
                        identity=f"tl:bench-{i}",
                        connection_id=connection_id,
                        kind="account" if i % 2 == 0 else "card",
                        provider_account_id=f"bench-{i}",
                        currency="GBP",
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(accounts.c.id)
                ).scalar_one()
            )
        fetch_ids: dict[int, list] = {}
        for account_id in account_ids:
            fetch_ids[account_id] = []
            for a, b in split_windows(FIRST, LAST, 90):
                fid = conn.execute(
                    raw_fetches.insert()
                    .values(
                        account_id=account_id,
                        kind="booked",
                        window_from=a,
                        window_to=b,
                        run_id="bench",
                        fetched_at=now,
                        http_status=200,
                        api_calls=1,
                        body="{}",
                    )
                    .returning(raw_fetches.c.id)
                ).scalar_one()
                fetch_ids[account_id].append((fid, a, b))
    raw_rows, staged_rows = _generate(n, account_ids, fetch_ids)
    with engine.begin() as conn:
        copy_rows(
            conn,
            "raw_transactions",
            ("id", "fetch_id", "account_id", "status", "position", "partition_date", "payload"),
            raw_rows,
        )
        conn.execute(
            sa.text("SELECT setval(pg_get_serial_sequence('raw_transactions', 'id'), :n)"),
            {"n": len(raw_rows)},
        )
        copy_rows(conn, "staged_transactions", STAGED_COPY_COLUMNS, (_staged_tuple(r) for r in staged_rows))
        conn.exec_driver_sql("ANALYZE raw_fetches; ANALYZE staged_transactions")
    return account_ids, staged_rows


def _raw_copy(engine, staged_rows: list[dict]) -> float:
    """Seconds to COPY the rows (as the ledger would hold them) into a bare copy of `transactions`."""
    now = utcnow()
    columns = ("id", *LEDGER_COLUMNS, "raw_transaction_id", "run_id", "loaded_at")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE transactions_bare (LIKE transactions)")
    with engine.begin() as conn:
        started = time.perf_counter()
        copy_rows(
            conn,
            "transactions_bare",
            columns,
            (
                (
                    i,
                    *[
                        json.dumps(r[c]) if c == "transaction_classification" else r[c]
                        for c in LEDGER_COLUMNS
                    ],
                    r["raw_transaction_id"],
                    "bench",
                    now,
                )
                for i, r in enumerate(staged_rows, 1)
            ),
        )
    elapsed = time.perf_counter() - started
    return elapsed


def run(args) -> None:
    n = 20_000 if getattr(args, "quick", False) else 200_000
    base = os.environ.get("BANK_PIPELINE_TEST_POSTGRES_URL") or DEFAULT_URL
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    engine = make_engine(f"{base}{sep}options={quote(f'-csearch_path={schema}')}")
    try:
        migrate(engine)
        started = time.perf_counter()
        account_ids, staged_rows = _setup(engine, n)
        print(
            f"set-up: {len(staged_rows):,} staged rows, {len(account_ids)} accounts, {FIRST}..{LAST} "
            f"({time.perf_counter() - started:.1f}s)",
            flush=True,
        )
        days = [FIRST + dt.timedelta(days=i) for i in range((LAST - FIRST).days + 1)]

        started = time.perf_counter()
        inserted = sum(load_account_days(engine, a, days, run_id="bench").inserted for a in account_ids)
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        again = sum(load_account_days(engine, a, days, run_id="bench-2").inserted for a in account_ids)
        rerun_s = time.perf_counter() - started
        with engine.connect() as conn:
            ledger = conn.execute(sa.select(sa.func.count()).select_from(transactions)).scalar_one()
        assert inserted == ledger == len(staged_rows) and again == 0, (inserted, ledger, again)

        copy_s = _raw_copy(engine, staged_rows)
        load_rate, copy_rate = inserted / load_s, len(staged_rows) / copy_s
        ratio = load_rate / copy_rate
        print(
            f"load_account_days: {inserted:,} rows in {load_s:.2f}s = {load_rate:,.0f} rows/s "
            f"(rerun, 0 new: {rerun_s:.2f}s)"
        )
        print(
            f"raw psycopg COPY into bare transactions copy: {len(staged_rows):,} rows in {copy_s:.2f}s "
            f"= {copy_rate:,.0f} rows/s"
        )
        verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
        print(f"ratio load / raw COPY = {ratio:.2f} ({verdict} the {TARGET_RATIO}x target)", flush=True)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
