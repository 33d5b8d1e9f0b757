"""Helpers for the ingest tests: an account row, realistic TrueLayer rows, a recording fake client."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
from pathlib import Path

import sqlalchemy as sa

from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import accounts, connections
from bank_pipeline.ingest import (
    dedup_account_days,
    fetch_account_days,
    load_account_days,
    normalize_account_days,
)
from bank_pipeline.truelayer.models import TransactionsResponse

DATA = Path(__file__).with_name("data")
_ids = itertools.count(1)


def examples() -> dict:
    """TrueLayer's documented example responses (copied from the Data API v1 OpenAPI document)."""
    return json.loads((DATA / "truelayer_transaction_examples.json").read_text())


def make_account(engine, kind: str = "account", provider_account_id: str | None = None, **extra) -> dict:
    """Insert a connection and an account (or card); return the accounts row as a dict."""
    n = next(_ids)
    now = utcnow()
    pid = provider_account_id or f"{hashlib.md5(str(n).encode()).hexdigest()}"
    identity = f"tl:{pid}:{n}"
    with engine.begin() as conn:
        connection_id = conn.execute(
            connections.insert()
            .values(provider_id="ob-lloyds", provider_name="Lloyds", created_at=now, updated_at=now)
            .returning(connections.c.id)
        ).scalar_one()
        values = dict(
            account_key="a" + hashlib.sha256(identity.encode()).hexdigest()[:12],
            identity=identity,
            connection_id=connection_id,
            kind=kind,
            provider_account_id=pid,
            provider_id="ob-lloyds",
            account_type="TRANSACTION" if kind == "account" else "CREDIT",
            display_name="Club Lloyds" if kind == "account" else "Lloyds Platinum Mastercard",
            currency="GBP",
            created_at=now,
            updated_at=now,
        )
        values.update(extra)
        account_id = conn.execute(accounts.insert().values(**values).returning(accounts.c.id)).scalar_one()
        row = conn.execute(sa.select(accounts).where(accounts.c.id == account_id)).one()
    return dict(row._mapping)


def txn(
    day: dt.date | str,
    amount: float,
    description: str = "TESCO STORES 3297",
    *,
    npti: str | None = "auto",
    provider_id: str | None = None,
    transaction_id: str | None = None,
    time: str = "T00:00:00Z",
    transaction_type: str | None = None,
    category: str = "PURCHASE",
    classification: list[str] | None = None,
    merchant: str | None = None,
    balance: float | None = None,
) -> dict:
    """A TrueLayer AccountTransaction in the documented shape. npti='auto' derives a stable id."""
    day = day if isinstance(day, str) else day.isoformat()
    row = {
        "transaction_id": transaction_id or hashlib.md5(f"{next(_ids)}".encode()).hexdigest(),
        "timestamp": f"{day}{time}",
        "description": description,
        "amount": amount,
        "currency": "GBP",
        "transaction_type": transaction_type or ("DEBIT" if amount < 0 else "CREDIT"),
        "transaction_category": category,
        "transaction_classification": classification
        if classification is not None
        else ["Shopping", "Groceries"],
    }
    if npti == "auto":
        npti = "txn-" + hashlib.sha1(f"{day}|{amount}|{description}".encode()).hexdigest()[:17]
    if npti:
        row["normalised_provider_transaction_id"] = npti
    if provider_id:
        row["provider_transaction_id"] = provider_id
        row["meta"] = {"bank_transaction_id": provider_id, "provider_transaction_category": "DEB"}
    if merchant:
        row["merchant_name"] = merchant
    if balance is not None:
        row["running_balance"] = {"amount": balance, "currency": "GBP"}
    return row


class FakeClient:
    """Stands in for DataClient: serves `booked` rows whose date part falls in the requested window,
    and `pending` rows; records every call."""

    def __init__(
        self, booked: list[dict] | None = None, pending: list[dict] | None = None, psu_ip=None, attempts=1
    ):
        self.booked = list(booked or [])
        self.pending = list(pending or [])
        self.psu_ip = psu_ip
        self.attempts = attempts
        self.calls: list[tuple] = []
        self.fail_with: Exception | None = None
        self.before_attempt = None  # DataClient's contract: called before every attempt

    def _attempt(self) -> None:
        for _ in range(self.attempts):
            if self.before_attempt is not None:
                self.before_attempt()

    def _response(self, rows: list[dict]) -> TransactionsResponse:
        body = json.dumps({"results": rows, "status": "Succeeded"})
        return TransactionsResponse(
            results=json.loads(body)["results"],
            status="Succeeded",
            body=body,
            http_status=200,
            attempts=self.attempts,
        )

    def transactions(self, kind, provider_account_id, date_from, date_to):
        self._attempt()
        self.calls.append(("transactions", kind, provider_account_id, date_from, date_to))
        if self.fail_with is not None:
            raise self.fail_with
        rows = [
            r
            for r in self.booked
            if date_from.isoformat() <= str(r.get("timestamp", ""))[:10] <= date_to.isoformat()
        ]
        return self._response(rows)

    def pending_transactions(self, kind, provider_account_id):
        self._attempt()
        self.calls.append(("pending", kind, provider_account_id))
        return self._response(self.pending)


def days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def run_pipeline(engine, client, account: dict, days, *, run_id="run-1", today=None, include_pending=True):
    """fetch → normalize → dedup → load for one account; returns the four stats."""
    fetched = fetch_account_days(
        engine, client, account, days, run_id=run_id, today=today, include_pending=include_pending
    )
    normalized = normalize_account_days(engine, account["id"], days)
    deduped = dedup_account_days(engine, account["id"], days)
    loaded = load_account_days(engine, account["id"], days, run_id=run_id)
    return fetched, normalized, deduped, loaded


def count(engine, table, **where) -> int:
    with engine.connect() as conn:
        stmt = sa.select(sa.func.count()).select_from(table)
        for name, value in where.items():
            stmt = stmt.where(table.c[name] == value)
        return conn.execute(stmt).scalar_one()
