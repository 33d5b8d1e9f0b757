"""Rows for enrichment tests, inserted directly (enrichment does not care how they were imported)."""

from __future__ import annotations

import csv
import itertools
from datetime import date, datetime, time, timezone
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine

from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import accounts, connections, transactions
from bank_pipeline.enrich.offline import OfflineModel
from bank_pipeline.enrich.types import TxnInput

_seq = itertools.count(1)


def make_account(engine: Engine, key: str | None = None) -> int:
    n = next(_seq)
    now = utcnow()
    with engine.begin() as conn:
        connection_id = conn.execute(
            connections.insert().values(provider_id="mock", created_at=now, updated_at=now)
        ).inserted_primary_key[0]
        return conn.execute(
            accounts.insert().values(
                account_key=key or f"a{n:012x}",
                identity=f"tl:acct-{n}-{id(engine)}",
                connection_id=connection_id,
                kind="account",
                provider_account_id=f"acct-{n}",
                currency="GBP",
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]


def add_transactions(engine: Engine, account_id: int, rows: list[tuple]) -> list[int]:
    """rows: (day, description, amount[, merchant_name, transaction_category]) → transaction ids."""
    ids = []
    with engine.begin() as conn:
        for row in rows:
            day, description, amount = row[:3]
            amount = Decimal(str(amount))
            n = next(_seq)
            ids.append(
                conn.execute(
                    transactions.insert().values(
                        dedup_key=f"k{n}-{account_id}-{id(engine)}",
                        account_id=account_id,
                        transaction_id=f"tx{n}",
                        booking_date=day,
                        booked_at=datetime.combine(day, time(12), tzinfo=timezone.utc),
                        amount=amount,
                        currency="GBP",
                        direction="credit" if amount > 0 else "debit",
                        description=description,
                        merchant_name=row[3] if len(row) > 3 else None,
                        transaction_category=row[4]
                        if len(row) > 4
                        else ("CREDIT" if amount > 0 else "PURCHASE"),
                        loaded_at=utcnow(),
                    )
                ).inserted_primary_key[0]
            )
    return ids


def days_of(*days: date) -> list[date]:
    return sorted(set(days))


LABELLED = Path(__file__).with_name("data") / "uk_descriptions_labelled.csv"


def _norm(text: str | None) -> str:
    return "".join(c for c in (text or "").casefold() if c.isalnum())


def labelled_accuracy(model: OfflineModel | None = None) -> tuple[float, float, int]:
    """(category accuracy, merchant accuracy where a merchant is expected, rows)."""
    model = model or OfflineModel()
    with LABELLED.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    right = merchants = merchants_right = 0
    for i, row in enumerate(rows):
        direction = "credit" if row["transaction_type"] == "CREDIT" else "debit"
        answer = model.classify(
            TxnInput(
                i, row["description"], Decimal(row["amount"]), direction, None, row["transaction_category"]
            )
        )
        right += answer.category == row["expected_category"]
        if row["expected_merchant"]:
            merchants += 1
            merchants_right += _norm(answer.merchant) == _norm(row["expected_merchant"])
    return right / len(rows), merchants_right / merchants, len(rows)
