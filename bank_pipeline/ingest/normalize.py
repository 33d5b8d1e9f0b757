"""Normalise landed TrueLayer rows into `staged_transactions`; invalid rows go to `quarantine`.

`normalize_row` is a pure function of one row as received. `normalize_account_days` applies it to
the rows of the LATEST booked fetch covering each day (a later fetch supersedes an earlier one) and
of the account's latest pending fetch, idempotently: a raw row is staged or quarantined once.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import quarantine, raw_transactions, staged_transactions
from bank_pipeline.ingest._db import (
    as_date,
    as_days,
    fetch_day_filter,
    insert_ignore,
    latest_booked_fetches,
    latest_pending_fetch,
    write_transaction,
)

REQUIRED_FIELDS = (
    "transaction_id",
    "timestamp",
    "description",
    "amount",
    "currency",
    "transaction_type",
    "transaction_category",
    "transaction_classification",
)
MAX_ID_CHARS = 256  # transaction ids (staged/transactions columns)
MAX_CATEGORY_CHARS = 32
MAX_AMOUNT = Decimal("1e14")  # Numeric(18, 4)
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")
_UTC = dt.timezone.utc


class InvalidRow(ValueError):
    """A row that does not satisfy the AccountTransaction contract; `reason` names field and value."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class NormalizedRow:
    transaction_id: str
    normalised_provider_transaction_id: str | None
    provider_transaction_id: str | None
    booking_date: dt.date  # the bank's local date part of `timestamp`, as sent
    booked_at: dt.datetime  # the instant, in UTC
    amount: Decimal  # signed: debits negative
    currency: str
    direction: str  # debit | credit
    description: str
    merchant_name: str | None
    transaction_category: str | None
    transaction_classification: list[str]
    running_balance: Decimal | None
    running_balance_currency: str | None


@dataclass
class NormalizeStats:
    parsed: int = 0  # raw rows newly staged (booked + pending)
    quarantined: int = 0  # raw rows newly quarantined
    pending: int = 0  # of `parsed`, pending rows
    already_done: int = 0  # raw rows of the selection that an earlier run had staged/quarantined

    def as_metadata(self) -> dict[str, int]:
        return asdict(self)


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_timestamp(value: Any) -> tuple[dt.datetime, dt.date]:
    """(UTC instant, local booking date) of a TrueLayer timestamp.

    Accepts `…Z`, `+00:00`, `+01:00` (or `+0100`), with or without fractional seconds, a space instead
    of `T`, and bare dates. A timestamp without an offset (TrueLayer's own examples send
    `2018-03-06T00:00:00`) is taken as UTC. The booking date is the date part as sent.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidRow(f"timestamp: expected an ISO 8601 date-time string, got {_show(value)}")
    text = value.strip()
    if len(text) == 10:
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise InvalidRow(f"timestamp: not an ISO 8601 date-time: {_show(value)}") from None
        return dt.datetime(day.year, day.month, day.day, tzinfo=_UTC), day
    candidate = text
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    # +0100 → +01:00 (Python 3.10's fromisoformat wants the colon)
    candidate = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", candidate)
    # Fractional seconds of any length → microseconds (3.10 accepts only 3 or 6 digits).
    candidate = re.sub(r"\.(\d+)(?=[+-]\d\d:\d\d$|$)", lambda m: "." + (m.group(1) + "000000")[:6], candidate)
    try:
        stamp = dt.datetime.fromisoformat(candidate)
    except ValueError:
        raise InvalidRow(f"timestamp: not an ISO 8601 date-time: {_show(value)}") from None
    local_day = stamp.date()
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=_UTC)
    return stamp.astimezone(_UTC), local_day


def local_date(value: Any) -> dt.date | None:
    """The local date part of a timestamp, or None when it does not parse (used when landing rows)."""
    try:
        return parse_timestamp(value)[1]
    except InvalidRow:
        return None


def _amount(value: Any, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidRow(f"{field}: expected a number, got {_show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRow(f"{field}: not a finite number: {_show(value)}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidRow(f"{field}: expected a number, got {_show(value)}") from None
    if not amount.is_finite():
        raise InvalidRow(f"{field}: not a finite number: {_show(value)}")
    if abs(amount) >= MAX_AMOUNT:
        raise InvalidRow(f"{field}: out of range: {_show(value)}")
    return amount


def _optional_id(payload: dict, field: str) -> str | None:
    value = payload.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidRow(f"{field}: expected a string, got {_show(value)}")
    text = str(value)
    if len(text) > MAX_ID_CHARS:
        raise InvalidRow(f"{field}: longer than {MAX_ID_CHARS} characters ({len(text)})")
    return text


def _currency(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _CURRENCY.match(value):
        raise InvalidRow(f"{field}: expected a 3-letter ISO 4217 code, got {_show(value)}")
    return value.upper()


def normalize_row(payload: dict, *, account_kind: str) -> NormalizedRow:
    """One TrueLayer AccountTransaction/CardTransaction as received → a NormalizedRow.

    Account amounts are signed by the bank (debits negative) and kept exactly as sent. Card
    providers differ (some send spending positive, some negative), so card amounts are signed from
    `transaction_type`: DEBIT → negative, CREDIT → positive. Raises InvalidRow naming the field.
    """
    if not isinstance(payload, dict):
        raise InvalidRow(f"row: expected a JSON object, got {_show(payload)}")
    if account_kind not in ("account", "card"):
        raise ValueError(f"account_kind must be 'account' or 'card', got {account_kind!r}")
    missing = [f for f in REQUIRED_FIELDS if payload.get(f) is None]
    if missing:
        raise InvalidRow(f"missing required field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")

    transaction_id = payload["transaction_id"]
    if not isinstance(transaction_id, str) or not transaction_id.strip():
        raise InvalidRow(f"transaction_id: expected a non-empty string, got {_show(transaction_id)}")
    if len(transaction_id) > MAX_ID_CHARS:
        raise InvalidRow(f"transaction_id: longer than {MAX_ID_CHARS} characters ({len(transaction_id)})")

    booked_at, booking_date = parse_timestamp(payload["timestamp"])

    description = payload["description"]
    if not isinstance(description, str):
        raise InvalidRow(f"description: expected a string, got {_show(description)}")

    raw_amount = _amount(payload["amount"], "amount")
    currency = _currency(payload["currency"], "currency")

    ttype = payload["transaction_type"]
    if not isinstance(ttype, str) or ttype.upper() not in ("DEBIT", "CREDIT"):
        raise InvalidRow(f"transaction_type: expected DEBIT or CREDIT, got {_show(ttype)}")
    ttype = ttype.upper()

    category = payload["transaction_category"]
    if not isinstance(category, str) or not category:
        raise InvalidRow(f"transaction_category: expected a string, got {_show(category)}")
    if len(category) > MAX_CATEGORY_CHARS:
        raise InvalidRow(
            f"transaction_category: longer than {MAX_CATEGORY_CHARS} characters: {_show(category)}"
        )

    classification = payload["transaction_classification"]
    if not isinstance(classification, list) or not all(isinstance(c, str) for c in classification):
        raise InvalidRow(
            f"transaction_classification: expected a list of strings, got {_show(classification)}"
        )

    if account_kind == "card":
        amount = -abs(raw_amount) if ttype == "DEBIT" else abs(raw_amount)
        direction = ttype.lower()
    else:
        amount = raw_amount  # signed by the bank: never abs() it
        direction = "debit" if amount < 0 else "credit" if amount > 0 else ttype.lower()

    merchant = payload.get("merchant_name")
    if merchant is not None and not isinstance(merchant, str):
        raise InvalidRow(f"merchant_name: expected a string, got {_show(merchant)}")

    balance = balance_currency = None
    running = payload.get("running_balance")
    if running is not None:
        if not isinstance(running, dict):
            raise InvalidRow(f"running_balance: expected an object, got {_show(running)}")
        if running.get("amount") is not None:
            balance = _amount(running["amount"], "running_balance.amount")
        if running.get("currency") is not None:
            balance_currency = _currency(running["currency"], "running_balance.currency")

    return NormalizedRow(
        transaction_id=transaction_id,
        normalised_provider_transaction_id=_optional_id(payload, "normalised_provider_transaction_id"),
        provider_transaction_id=_optional_id(payload, "provider_transaction_id"),
        booking_date=booking_date,
        booked_at=booked_at,
        amount=amount,
        currency=currency,
        direction=direction,
        description=description,
        merchant_name=merchant or None,
        transaction_category=category,
        transaction_classification=list(classification),
        running_balance=balance,
        running_balance_currency=balance_currency,
    )


def _account_kind(conn, account_id: int) -> str:
    from bank_pipeline.db.schema import accounts

    kind = conn.execute(sa.select(accounts.c.kind).where(accounts.c.id == account_id)).scalar()
    if kind is None:
        raise ValueError(f"no account with id {account_id}")
    return kind


def normalize_account_days(engine: Engine, account_id: int, days: list[dt.date]) -> NormalizeStats:
    """Stage (or quarantine) the raw rows of the latest booked fetch of each day and of the account's
    latest pending fetch. Rows already staged or quarantined are left alone, so reruns add nothing."""
    days = as_days(days)
    stats = NormalizeStats()
    r, s, q = raw_transactions, staged_transactions, quarantine
    with engine.connect() as conn:
        kind = _account_kind(conn, account_id)
        latest = latest_booked_fetches(conn, account_id, days)
        pending_fetch = latest_pending_fetch(conn, account_id)
        selection = [
            sa.and_(r.c.status == "booked", fetch_day_filter(r.c.fetch_id, r.c.partition_date, latest))
        ]
        if pending_fetch is not None:
            selection.append(sa.and_(r.c.fetch_id == pending_fetch, r.c.status == "pending"))
        rows = conn.execute(
            sa.select(
                r.c.id,
                r.c.fetch_id,
                r.c.status,
                r.c.partition_date,
                r.c.payload,
                (s.c.raw_transaction_id.is_not(None) | q.c.raw_transaction_id.is_not(None)).label("done"),
            )
            .select_from(
                r.outerjoin(s, s.c.raw_transaction_id == r.c.id).outerjoin(
                    q, q.c.raw_transaction_id == r.c.id
                )
            )
            .where(r.c.account_id == account_id, sa.or_(*selection))
            .order_by(r.c.id)
        ).all()
    staged_rows: list[dict] = []
    quarantined: list[dict] = []
    now = utcnow()
    for raw_id, fetch_id, status, partition_date, payload_text, done in rows:
        if done:
            stats.already_done += 1
            continue
        try:
            try:
                payload = json.loads(payload_text)
            except ValueError:
                raise InvalidRow("row: not valid JSON") from None
            row = normalize_row(payload, account_kind=kind)
        except InvalidRow as exc:
            quarantined.append(
                dict(
                    raw_transaction_id=raw_id,
                    fetch_id=fetch_id,
                    account_id=account_id,
                    partition_date=as_date(partition_date),
                    reason=f"{status} row {raw_id}: {exc.reason}",
                    payload=payload_text,
                    created_at=now,
                )
            )
            continue
        values = dict(vars(row))  # not asdict(): it deep-copies every field
        values.update(raw_transaction_id=raw_id, fetch_id=fetch_id, account_id=account_id, status=status)
        staged_rows.append(values)
    if staged_rows or quarantined:
        with write_transaction(engine) as conn:
            # A concurrent run may have staged some of these first: count only what this run added.
            booked = [v for v in staged_rows if v["status"] == "booked"]
            pending = [v for v in staged_rows if v["status"] != "booked"]
            stats.parsed = insert_ignore(conn, staged_transactions, booked, ["raw_transaction_id"])
            stats.pending = insert_ignore(conn, staged_transactions, pending, ["raw_transaction_id"])
            stats.parsed += stats.pending
            stats.quarantined = insert_ignore(conn, quarantine, quarantined, ["raw_transaction_id"])
    return stats
