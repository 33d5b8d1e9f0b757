"""Normalise landed TrueLayer rows into `staged_transactions`; invalid rows go to `quarantine`.

`normalize_row` is a pure function of one row as received. `normalize_account_days` applies it to
the rows of the LATEST booked fetch covering each day (a later fetch supersedes an earlier one) and
of the account's latest pending fetch, idempotently: a raw row is staged or quarantined once.

Bad input never fails the step: text is cleaned (`text.clean_text`), and a row that cannot be
parsed — or that raises anything unexpected, or that the database refuses — is quarantined with
its reason while the rest load. The quarantine converges: one entry per distinct bad row of an
account (`quarantine_key`: its stable id, else a hash of its content), re-sightings only counted,
and the entry is resolved when a later fetch brings a valid row under the same stable id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import re
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import (
    quarantine,
    quarantine_sightings,
    raw_transactions,
    staged_transactions,
)
from bank_pipeline.ingest._db import (
    CHUNK_KEYS,
    as_date,
    as_days,
    chunks,
    fetch_day_filter,
    insert_ignore,
    latest_booked_fetches,
    latest_pending_fetch,
    write_transaction,
)
from bank_pipeline.ingest.text import clean_text, is_iso_currency
from bank_pipeline.timestamps import parse_iso

log = logging.getLogger(__name__)

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
FLAG_CLEANED = "text_cleaned"
FLAG_CURRENCY = "currency_mismatch"


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
    flags: str | None = None  # comma-separated FLAG_* names


@dataclass
class NormalizeStats:
    parsed: int = 0  # raw rows newly staged (booked + pending)
    quarantined: int = 0  # distinct bad rows newly quarantined (new quarantine entries)
    requarantined: int = 0  # sightings of bad rows already in quarantine (counted, not copied)
    resolved: int = 0  # quarantine entries healed by a valid row under the same stable id
    pending: int = 0  # of `parsed`, pending rows
    already_done: int = 0  # raw rows of the selection that an earlier run had staged/quarantined
    cleaned: int = 0  # staged rows whose text had control characters removed
    currency_mismatch: int = 0  # staged rows in a currency other than the account's (kept, flagged)

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
    try:
        stamp = parse_iso(text)
    except ValueError:
        raise InvalidRow(f"timestamp: not an ISO 8601 date-time: {_show(value)}") from None
    local_day = stamp.date()
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=_UTC)
    try:
        return stamp.astimezone(_UTC), local_day
    except OverflowError:  # e.g. 9999-12-31T23:59:59-05:00 is past the last representable instant
        raise InvalidRow(f"timestamp: out of range: {_show(value)}") from None


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
    text = clean_text(str(value))
    if len(text) > MAX_ID_CHARS:
        raise InvalidRow(f"{field}: longer than {MAX_ID_CHARS} characters ({len(text)})")
    return text or None


def _currency(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _CURRENCY.match(value):
        raise InvalidRow(f"{field}: expected a 3-letter ISO 4217 code, got {_show(value)}")
    if not is_iso_currency(value):
        raise InvalidRow(f"{field}: not an ISO 4217 currency code: {_show(value)}")
    return value.upper()


class _Cleaner:
    """clean_text that remembers whether it changed anything (for the row's `text_cleaned` flag)."""

    def __init__(self) -> None:
        self.changed = False

    def __call__(self, value: str) -> str:
        cleaned = clean_text(value)
        self.changed = self.changed or cleaned != value
        return cleaned


def normalize_row(payload: dict, *, account_kind: str, account_currency: str | None = None) -> NormalizedRow:
    """One TrueLayer AccountTransaction/CardTransaction as received → a NormalizedRow.

    Account amounts are signed by the bank (debits negative) and kept exactly as sent. Card
    providers differ (some send spending positive, some negative), so card amounts are signed from
    `transaction_type`: DEBIT → negative, CREDIT → positive. Text fields are cleaned of control
    characters (flag `text_cleaned`); a currency other than `account_currency` is kept and flagged
    (`currency_mismatch`). Raises InvalidRow naming the field.
    """
    if not isinstance(payload, dict):
        raise InvalidRow(f"row: expected a JSON object, got {_show(payload)}")
    if account_kind not in ("account", "card"):
        raise ValueError(f"account_kind must be 'account' or 'card', got {account_kind!r}")
    missing = [f for f in REQUIRED_FIELDS if payload.get(f) is None]
    if missing:
        raise InvalidRow(f"missing required field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")

    clean = _Cleaner()
    transaction_id = payload["transaction_id"]
    if isinstance(transaction_id, str):
        transaction_id = clean(transaction_id)
    if not isinstance(transaction_id, str) or not transaction_id.strip():
        raise InvalidRow(f"transaction_id: expected a non-empty string, got {_show(transaction_id)}")
    if len(transaction_id) > MAX_ID_CHARS:
        raise InvalidRow(f"transaction_id: longer than {MAX_ID_CHARS} characters ({len(transaction_id)})")

    booked_at, booking_date = parse_timestamp(payload["timestamp"])

    description = payload["description"]
    if not isinstance(description, str):
        raise InvalidRow(f"description: expected a string, got {_show(description)}")
    description = clean(description)

    raw_amount = _amount(payload["amount"], "amount")
    currency = _currency(payload["currency"], "currency")

    ttype = payload["transaction_type"]
    if not isinstance(ttype, str) or ttype.upper() not in ("DEBIT", "CREDIT"):
        raise InvalidRow(f"transaction_type: expected DEBIT or CREDIT, got {_show(ttype)}")
    ttype = ttype.upper()

    category = payload["transaction_category"]
    if isinstance(category, str):
        category = clean(category)
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
    classification = [clean(c) for c in classification]

    if account_kind == "card":
        amount = -abs(raw_amount) if ttype == "DEBIT" else abs(raw_amount)
        direction = ttype.lower()
    else:
        amount = raw_amount  # signed by the bank: never abs() it
        direction = "debit" if amount < 0 else "credit" if amount > 0 else ttype.lower()

    merchant = payload.get("merchant_name")
    if merchant is not None and not isinstance(merchant, str):
        raise InvalidRow(f"merchant_name: expected a string, got {_show(merchant)}")
    if merchant is not None:
        merchant = clean(merchant)

    balance = balance_currency = None
    running = payload.get("running_balance")
    if running is not None:
        if not isinstance(running, dict):
            raise InvalidRow(f"running_balance: expected an object, got {_show(running)}")
        if running.get("amount") is not None:
            balance = _amount(running["amount"], "running_balance.amount")
        if running.get("currency") is not None:
            balance_currency = _currency(running["currency"], "running_balance.currency")

    flags = [FLAG_CLEANED] if clean.changed else []
    if account_currency and currency != account_currency.upper():
        flags.append(FLAG_CURRENCY)
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
        flags=",".join(flags) or None,
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def quarantine_key(status: str, payload: Any, payload_text: str) -> str:
    """The identity of a bad (or healed) row within its account, stable across re-fetches:
    its stable id when it has one (`<status>:n:` / `<status>:p:` + sha256), else a hash of its
    content without `transaction_id` (which TrueLayer may change on every request)."""
    if isinstance(payload, dict):
        for field, tag in (("normalised_provider_transaction_id", "n"), ("provider_transaction_id", "p")):
            value = payload.get(field)
            if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
                return f"{status}:{tag}:{_digest(clean_text(str(value)))}"
        content = {k: v for k, v in payload.items() if k != "transaction_id"}
        return f"{status}:h:{_digest(json.dumps(content, sort_keys=True, default=str))}"
    return f"{status}:h:{_digest(payload_text)}"


def _account(conn, account_id: int) -> tuple[str, str | None]:
    """(kind, currency) of the account."""
    from bank_pipeline.db.schema import accounts

    row = conn.execute(sa.select(accounts.c.kind, accounts.c.currency).where(accounts.c.id == account_id)).first()
    if row is None:
        raise ValueError(f"no account with id {account_id}")
    return row.kind, row.currency


def _unexpected(exc: Exception, where: str) -> str:
    """A one-line, log-safe reason for an error nobody anticipated."""
    return clean_text(f"{where}: {type(exc).__name__}: {exc}")[:300]


def normalize_account_days(engine: Engine, account_id: int, days: list[dt.date]) -> NormalizeStats:
    """Stage (or quarantine) the raw rows of the latest booked fetch of each day and of the account's
    latest pending fetch. Rows already staged or quarantined are left alone, so reruns add nothing."""
    days = as_days(days)
    stats = NormalizeStats()
    r, s, q, qs = raw_transactions, staged_transactions, quarantine, quarantine_sightings
    with engine.connect() as conn:
        kind, account_currency = _account(conn, account_id)
        latest = latest_booked_fetches(conn, account_id, days)
        pending_fetch = latest_pending_fetch(conn, account_id)
        selection = [
            sa.and_(r.c.status == "booked", fetch_day_filter(r.c.fetch_id, r.c.partition_date, latest))
        ]
        if pending_fetch is not None:
            selection.append(sa.and_(r.c.fetch_id == pending_fetch, r.c.status == "pending"))
        done = s.c.raw_transaction_id.is_not(None) | q.c.raw_transaction_id.is_not(None)
        rows = conn.execute(
            sa.select(
                r.c.id,
                r.c.fetch_id,
                r.c.status,
                r.c.partition_date,
                r.c.payload,
                (done | qs.c.raw_transaction_id.is_not(None)).label("done"),
            )
            .select_from(
                r.outerjoin(s, s.c.raw_transaction_id == r.c.id)
                .outerjoin(q, q.c.raw_transaction_id == r.c.id)
                .outerjoin(qs, qs.c.raw_transaction_id == r.c.id)
            )
            .where(r.c.account_id == account_id, sa.or_(*selection))
            .order_by(r.c.id)
        ).all()
    staged_rows: list[dict] = []
    bad: list[dict] = []
    healed: dict[str, int] = {}  # quarantine key of a valid row → its raw id
    now = utcnow()
    for raw_id, fetch_id, status, partition_date, payload_text, is_done in rows:
        if is_done:
            stats.already_done += 1
            continue
        payload: Any = None
        try:
            try:
                payload = json.loads(payload_text)
            except ValueError:
                raise InvalidRow("row: not valid JSON") from None
            row = normalize_row(payload, account_kind=kind, account_currency=account_currency)
            key = quarantine_key(status, payload, payload_text)
        except InvalidRow as exc:
            reason = exc.reason
        except Exception as exc:  # noqa: BLE001 - one odd row must never fail the account
            reason = _unexpected(exc, "unexpected error")
            log.warning("account %s raw row %s quarantined: %s", account_id, raw_id, reason)
        else:
            values = dict(vars(row))  # not asdict(): it deep-copies every field
            values.update(raw_transaction_id=raw_id, fetch_id=fetch_id, account_id=account_id, status=status)
            staged_rows.append(values)
            healed.setdefault(key, raw_id)
            continue
        bad.append(
            dict(
                raw_transaction_id=raw_id,
                fetch_id=fetch_id,
                account_id=account_id,
                partition_date=as_date(partition_date),
                reason=f"{status} row {raw_id}: {reason}",
                payload=payload_text,
                created_at=now,
                row_key=quarantine_key(status, payload, payload_text),
                last_seen_at=now,
            )
        )
    if not (staged_rows or bad):
        return stats
    try:
        with write_transaction(engine) as conn:
            _write(conn, account_id, staged_rows, bad, healed, now, stats)
    except Exception as exc:  # noqa: BLE001 - find the row(s) the database refuses, keep the rest
        log.warning("account %s: batch write failed (%s); writing row by row", account_id, _unexpected(exc, "db"))
        _write_row_by_row(engine, account_id, staged_rows, bad, healed, now, stats)
    return stats


def _write(
    conn, account_id: int, staged_rows: list[dict], bad: list[dict], healed: dict[str, int], now, stats
) -> None:
    """Stage the valid rows, record the bad ones in the (converging) quarantine, resolve healed entries."""
    q, qs = quarantine, quarantine_sightings
    # A concurrent run may have staged some of these first: count only what this run added.
    booked = [v for v in staged_rows if v["status"] == "booked"]
    pending = [v for v in staged_rows if v["status"] != "booked"]
    parsed = insert_ignore(conn, staged_transactions, booked, ["raw_transaction_id"])
    added_pending = insert_ignore(conn, staged_transactions, pending, ["raw_transaction_id"])
    stats.parsed += parsed + added_pending
    stats.pending += added_pending
    stats.cleaned += sum(1 for v in staged_rows if v["flags"] and FLAG_CLEANED in v["flags"])
    stats.currency_mismatch += sum(1 for v in staged_rows if v["flags"] and FLAG_CURRENCY in v["flags"])
    if bad:
        first: dict[str, dict] = {}
        for entry in bad:
            first.setdefault(entry["row_key"], entry)
        new = insert_ignore(conn, q, list(first.values()), ["account_id", "row_key"])
        stats.quarantined += new
        ids: dict[str, int] = {}
        for part in chunks(sorted(first), CHUNK_KEYS):
            ids.update(
                conn.execute(
                    sa.select(q.c.row_key, q.c.id).where(q.c.account_id == account_id, q.c.row_key.in_(part))
                ).all()
            )
        sightings = [dict(raw_transaction_id=e["raw_transaction_id"], quarantine_id=ids[e["row_key"]]) for e in bad]
        added = insert_ignore(conn, qs, sightings, ["raw_transaction_id"])
        stats.requarantined += max(0, added - new)
        touched = sorted(set(ids.values()))
        for part in chunks(touched, CHUNK_KEYS):
            seen = (
                sa.select(sa.func.count())
                .select_from(qs)
                .where(qs.c.quarantine_id == q.c.id)
                .scalar_subquery()
            )
            conn.execute(sa.update(q).where(q.c.id.in_(part)).values(seen_count=seen, last_seen_at=now))
    if healed:
        for part in chunks(sorted(healed), CHUNK_KEYS):
            open_entries = conn.execute(
                sa.select(q.c.id, q.c.row_key).where(
                    q.c.account_id == account_id, q.c.row_key.in_(part), q.c.resolved_at.is_(None)
                )
            ).all()
            for entry_id, key in open_entries:
                conn.execute(
                    sa.update(q)
                    .where(q.c.id == entry_id)
                    .values(resolved_at=now, resolution=f"healed: raw row {healed[key]} is a valid version")
                )
            stats.resolved += len(open_entries)


def _write_row_by_row(
    engine: Engine, account_id: int, staged_rows: list[dict], bad: list[dict], healed: dict[str, int], now, stats
) -> None:
    """The slow path after a batch the database refused: each row in its own transaction; a row
    refused again is quarantined with the database's reason. Errors writing the quarantine itself
    (the database is down, not the row) propagate."""
    by_raw = {v["raw_transaction_id"]: v for v in staged_rows}
    for values in staged_rows:
        try:
            with write_transaction(engine) as conn:
                _write(conn, account_id, [values], [], {}, now, stats)
        except Exception as exc:  # noqa: BLE001 - this row only
            status, raw_id = values["status"], values["raw_transaction_id"]
            text = _raw_payload(engine, raw_id)
            bad.append(
                dict(
                    raw_transaction_id=values["raw_transaction_id"],
                    fetch_id=values["fetch_id"],
                    account_id=account_id,
                    partition_date=values["booking_date"],
                    reason=f"{status} row {raw_id}: " + _unexpected(exc, "the database refused it"),
                    payload=text,
                    created_at=now,
                    row_key=quarantine_key(status, json.loads(text), text),
                    last_seen_at=now,
                )
            )
            by_raw.pop(raw_id, None)
    ok = {k: rid for k, rid in healed.items() if rid in by_raw}
    with write_transaction(engine) as conn:
        _write(conn, account_id, [], bad, ok, now, stats)


def _raw_payload(engine: Engine, raw_id: int) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.select(raw_transactions.c.payload).where(raw_transactions.c.id == raw_id)).scalar_one()
