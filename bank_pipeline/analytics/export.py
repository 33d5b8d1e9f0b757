"""Exports of the enriched ledger: CSV, Parquet and beancount, with stable column names.

`ledger_frame` reads booked transactions of a date range with their account and enrichment into
a pandas DataFrame whose columns are `COLUMNS` (documented in docs/usage.md); the writers turn it
into a file. Amounts stay exact (Decimal; Parquet `decimal128(18, 4)`), signed as the bank sent
them (money out negative). A file is written next to its destination and renamed into place, so
a failed export never leaves half a file behind.

CSV cells a spreadsheet would run as a formula (text from the bank starting with `=`, `+`, `-`,
`@`, a tab or a carriage return) are written with a leading single quote, as OWASP advises
against CSV injection (`bank_pipeline.formulas`); `raw=True` (`export --raw`) writes them
verbatim for programs that read the file. Amounts, dates and ids are never altered. Parquet and
beancount are exact: neither is opened by a spreadsheet as formulas.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy import Engine

from bank_pipeline.db.schema import accounts, enrichments, transactions, transfers
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.formulas import neutralise


@dataclass(frozen=True)
class Column:
    name: str
    arrow: pa.DataType
    meaning: str


# The exported columns, in order. Names are a stable interface: add columns, never rename them.
COLUMNS: tuple[Column, ...] = (
    Column("transaction_id", pa.int64(), "the ledger's id of the transaction (what `bank-pipeline categorize` takes)"),
    Column("account_key", pa.string(), "the account's partition key in Dagster"),
    Column("account_name", pa.string(), "the account's display name at the bank"),
    Column("account_kind", pa.string(), "`account` or `card`"),
    Column("booking_date", pa.date32(), "the bank's booking date (its local date)"),
    Column("booked_at", pa.timestamp("us", tz="UTC"), "the booking instant, in UTC"),
    Column("amount", pa.decimal128(18, 4), "signed amount: money out negative, money in positive"),
    Column("currency", pa.string(), "ISO 4217 code of the amount"),
    Column("direction", pa.string(), "`debit` (money out) or `credit` (money in)"),
    Column("description", pa.string(), "the bank's description, as sent"),
    Column("merchant_name", pa.string(), "the bank's merchant name, when it sent one"),
    Column("category", pa.string(), "category from the enrichment (empty: not enriched yet)"),
    Column("subcategory", pa.string(), "subcategory, when known"),
    Column("merchant", pa.string(), "the clean merchant name from the enrichment"),
    Column("merchant_type", pa.string(), "the kind of business, when known"),
    Column("essential", pa.bool_(), "essential (true) or discretionary (false) spending"),
    Column("payment_method", pa.string(), "card, direct_debit, standing_order, transfer, …"),
    Column("category_source", pa.string(), "who chose the category: override, rule, classifier, cache, model, provider"),
    Column("provider_transaction_id", pa.string(), "the bank's own transaction id, when sent"),
    Column(
        "normalised_provider_transaction_id",
        pa.string(),
        "TrueLayer's stable transaction id, when sent",
    ),
    Column("transfer_id", pa.int64(), "the pair's id when it is a leg of a transfer between own accounts"),
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)
ARROW_SCHEMA = pa.schema([pa.field(c.name, c.arrow) for c in COLUMNS])
FORMATS = ("csv", "parquet", "beancount")


def ledger_frame(engine: Engine, date_from: dt.date, date_to: dt.date) -> pd.DataFrame:
    """Booked transactions with `date_from` ≤ booking date ≤ `date_to`, one row each, in `COLUMNS`.

    Ordered by booking date, account key, instant and id. Amounts are `Decimal`, dates `date`,
    `booked_at` a UTC timestamp; missing values are None / NaT.
    """
    if date_to < date_from:
        raise BankPipelineError(f"--to {date_to} is before --from {date_from}")
    t, a, e = transactions.c, accounts.c, enrichments.c
    query = (
        sa.select(
            t.id.label("transaction_id"),
            a.account_key,
            a.display_name.label("account_name"),
            a.kind.label("account_kind"),
            t.booking_date,
            t.booked_at,
            t.amount,
            t.currency,
            t.direction,
            t.description,
            t.merchant_name,
            e.category,
            e.subcategory,
            e.merchant,
            e.merchant_type,
            e.essential,
            e.payment_method,
            e.source.label("category_source"),
            t.provider_transaction_id,
            t.normalised_provider_transaction_id,
            transfers.c.id.label("transfer_id"),
        )
        .select_from(
            transactions.join(accounts, accounts.c.id == t.account_id)
            .outerjoin(enrichments, enrichments.c.transaction_id == t.id)
            .outerjoin(
                transfers,
                sa.or_(transfers.c.debit_transaction_id == t.id, transfers.c.credit_transaction_id == t.id),
            )
        )
        .where(t.booking_date.between(date_from, date_to))
        .order_by(t.booking_date, a.account_key, t.booked_at, t.id)
    )
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        row["amount"] = Decimal(row["amount"]).quantize(Decimal("0.0001"))
        booked = row["booked_at"]
        if booked is not None and booked.tzinfo is None:  # SQLite returns naive UTC instants
            row["booked_at"] = booked.replace(tzinfo=dt.timezone.utc)
        if row["essential"] is not None:
            row["essential"] = bool(row["essential"])
    frame = pd.DataFrame.from_records(rows, columns=list(COLUMN_NAMES))
    frame["transaction_id"] = frame["transaction_id"].astype("int64")
    frame["transfer_id"] = frame["transfer_id"].astype("Int64")
    frame["booked_at"] = pd.to_datetime(frame["booked_at"], utc=True)
    frame = frame.astype({"essential": "object"})
    return frame


# --- CSV ------------------------------------------------------------------------------------


def amount_text(amount: Decimal) -> str:
    """An amount as plain decimal text: at least two decimals, more only when it has them."""
    text = format(amount.normalize(), "f")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


# Columns of text from outside (the bank, the enrichment, the user); the others are numbers, dates,
# booleans or ids written by this module.
TEXT_COLUMNS = ("account_key", "account_name", "account_kind", "currency", "direction", "description",
                "merchant_name", "category", "subcategory", "merchant", "merchant_type", "payment_method",
                "category_source", "provider_transaction_id", "normalised_provider_transaction_id")


def _csv_frame(frame: pd.DataFrame, raw: bool = False) -> pd.DataFrame:
    out = frame.copy()
    if not raw:
        for name in TEXT_COLUMNS:
            out[name] = [neutralise(v) if isinstance(v, str) else v for v in frame[name]]
    out["amount"] = [amount_text(v) for v in frame["amount"]]
    out["booking_date"] = [d.isoformat() for d in frame["booking_date"]]
    out["booked_at"] = [
        "" if pd.isna(v) else v.strftime("%Y-%m-%dT%H:%M:%S") + (f".{v.microsecond:06d}" if v.microsecond else "") + "Z"
        for v in frame["booked_at"]
    ]
    out["essential"] = ["" if v is None else ("true" if v else "false") for v in frame["essential"]]
    return out


def write_csv(frame: pd.DataFrame, stream: IO[str], raw: bool = False) -> None:
    """UTF-8 CSV with a header row of `COLUMN_NAMES`; quoted where needed (RFC 4180); an empty
    field is a missing value; formula-like text neutralised unless `raw`."""
    # CRLF as RFC 4180 says: the writer then quotes a cell holding a bare carriage return, which
    # with "\n" line ends it left unquoted (and a reader split the row there).
    _csv_frame(frame, raw).to_csv(stream, index=False, lineterminator="\r\n")


# --- Parquet --------------------------------------------------------------------------------


def arrow_table(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, schema=ARROW_SCHEMA, preserve_index=False)


def write_parquet(frame: pd.DataFrame, stream: IO[bytes]) -> None:
    """Parquet with `ARROW_SCHEMA`: exact decimals, dates as date32, instants as UTC timestamps."""
    pq.write_table(arrow_table(frame), stream)


# --- beancount --------------------------------------------------------------------------------

_NOT_NAME = re.compile(r"[^0-9A-Za-z]+")


def _component(text: str | None, fallback: str) -> str:
    """A beancount account-name component: CamelCase letters and digits, starting upper-case."""
    words = [w for w in _NOT_NAME.split(text or "") if w]
    name = "".join(w[:1].upper() + w[1:] for w in words)
    return name if name and name[0].isalnum() else fallback


def ledger_account(kind: str, display_name: str | None, account_key: str) -> str:
    """`Assets:Bank:<Name>-<KEY>` for an account, `Liabilities:Card:<Name>-<KEY>` for a card."""
    base = "Liabilities:Card" if kind == "card" else "Assets:Bank"
    return f"{base}:{_component(display_name, 'Account')}-{_component(account_key, 'Key').upper()}"


def counter_account(direction: str, category: str | None, subcategory: str | None) -> str:
    """Where the other side of a transaction goes: `Expenses:<Category>[:<Sub>]` for money out,
    `Income:<Category>[:<Sub>]` for money in, the clearing account `Assets:Transfers` for transfers."""
    if category == "transfers":
        return "Assets:Transfers"
    root = "Income" if direction == "credit" else "Expenses"
    if not category:
        return f"{root}:Uncategorised"
    parts = [root]
    if not (root == "Income" and category == "income" and subcategory):
        parts.append(_component(category, "Other"))
    if subcategory:
        parts.append(_component(subcategory, "Other"))
    return ":".join(parts)


def _present(value):
    """None for pandas' missing values (NaN, NA, NaT), the value otherwise."""
    return None if value is None or (not isinstance(value, (Decimal, str, dt.date)) and pd.isna(value)) else value


def _quoted(text: str | None) -> str:
    one_line = " ".join((text or "").split())
    return '"' + one_line.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_beancount(frame: pd.DataFrame, stream: IO[str]) -> None:
    """A beancount ledger: an `open` per account used, then one two-legged transaction per row
    (the bank/card account and its category account), carrying the ledger id as metadata."""
    stream.write(
        "; bank_pipeline export (beancount). Amounts as the bank booked them; the other leg is\n"
        "; the transaction's category.\n"
    )
    currencies = sorted(set(frame["currency"]))
    for currency in currencies:
        stream.write(f'option "operating_currency" "{currency}"\n')
    stream.write("\n")
    rows = [{k: _present(v) for k, v in row.items()} for row in frame.to_dict("records")]
    opened: dict[str, dt.date] = {}
    entries = []
    for row in rows:
        own = ledger_account(row["account_kind"], row["account_name"], row["account_key"])
        other = counter_account(row["direction"], row["category"], row["subcategory"])
        for name in (own, other):
            opened[name] = min(opened.get(name, row["booking_date"]), row["booking_date"])
        entries.append((row, own, other))
    for name, day in sorted(opened.items(), key=lambda item: (item[1], item[0])):
        stream.write(f"{day.isoformat()} open {name}\n")
    for row, own, other in entries:
        amount = row["amount"]
        payee = row["merchant"] or row["merchant_name"]
        head = f"{row['booking_date'].isoformat()} *"
        if payee:
            head += f" {_quoted(payee)}"
        stream.write(f"\n{head} {_quoted(row['description'])}\n")
        stream.write(f'  transaction_id: "{row["transaction_id"]}"\n')
        if row["transfer_id"] is not None:
            stream.write(f'  transfer_id: "{row["transfer_id"]}"\n')
        if row["category"]:
            stream.write(f"  category: {_quoted(row['category'])}\n")
        stream.write(f"  {own}  {amount_text(amount)} {row['currency']}\n")
        stream.write(f"  {other}  {amount_text(-amount)} {row['currency']}\n")


# --- to a file or stdout ----------------------------------------------------------------------

_TEXT_WRITERS: dict[str, Callable[[pd.DataFrame, IO[str]], None]] = {
    "csv": write_csv,
    "beancount": write_beancount,
}


def render(frame: pd.DataFrame, fmt: str, raw: bool = False) -> bytes:
    """The export as bytes (UTF-8 for the text formats); `raw`: CSV cells verbatim."""
    if fmt == "parquet":
        buffer = io.BytesIO()
        write_parquet(frame, buffer)
        return buffer.getvalue()
    if fmt not in _TEXT_WRITERS:
        raise BankPipelineError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
    text = io.StringIO()
    if fmt == "csv":
        write_csv(frame, text, raw)
    else:
        _TEXT_WRITERS[fmt](frame, text)
    return text.getvalue().encode("utf-8")


def check_destination(path: Path) -> None:
    """Refuse, before any work, a destination that cannot be a file: a directory, or a path
    whose folder does not exist."""
    if path.is_dir():
        raise BankPipelineError(f"cannot write the export to {path}: it is a directory (name a file)")
    if not path.parent.is_dir():
        raise BankPipelineError(f"cannot write the export to {path}: the folder {path.parent} does not exist")


def write_file(data: bytes, path: Path) -> None:
    """Write `data` to `path` atomically (a temporary file beside it, then a rename)."""
    path = Path(path)
    check_destination(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise BankPipelineError(f"cannot write the export to {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise BankPipelineError(f"cannot write the export to {path}: {exc.strerror or exc}") from None


def export_ledger(
    engine: Engine, date_from: dt.date, date_to: dt.date, fmt: str, out: Path | None = None, *, raw: bool = False
) -> tuple[int, bytes | None]:
    """Export a date range in `fmt`: to `out` when given (returns (rows, None)), else returns
    (rows, the bytes) for the caller to print."""
    if fmt not in FORMATS:
        raise BankPipelineError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
    if out is not None:
        check_destination(Path(out))
    frame = ledger_frame(engine, date_from, date_to)
    data = render(frame, fmt, raw)
    if out is None:
        return len(frame), data
    write_file(data, out)
    return len(frame), None
