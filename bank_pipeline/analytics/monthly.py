"""Monthly spending: per account × month × category × currency, income, spending and net.

Computed with pandas from the enriched ledger (`transactions` + `enrichments`) and kept in the
`monthly_spending` table, one set of rows per account-month (the Dagster partition), replaced
whole on each computation. A leg of a paired transfer between own accounts (a card repayment
too), whatever its category, and any row the user or the pairing labelled `transfers`, is neither
income nor spending and is left out. A transaction not yet enriched counts as `unknown`.

`live` computes the same figures at the moment they are read (what `bank-pipeline report`
shows), so a reader never sees figures older than the ledger.

Amounts are summed exactly, as integers of 1/10,000 of the currency unit (the ledger's scale),
and returned as `Decimal`s. The change against the previous month is not stored: it is derived
when rows are read, so recomputing one month never makes its neighbour stale.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import Engine

from bank_pipeline import clock
from bank_pipeline.db import utcnow, write_transaction
from bank_pipeline.db.schema import (
    accounts,
    enrichments,
    monthly_spending,
    raw_fetches,
    transactions,
    transfers,
)

TRANSFERS = "transfers"
UNCATEGORISED = "unknown"
SCALE = 4  # the ledger's Numeric(18, 4)
_UNIT = 10**SCALE

KEY = ["account_id", "month", "category", "currency"]
FIGURES = ["income", "spending", "net"]
COLUMNS = [*KEY, *FIGURES, "transactions"]


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def next_month(month: dt.date) -> dt.date:
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def previous_month(month: dt.date) -> dt.date:
    return (month.replace(day=1) - dt.timedelta(days=1)).replace(day=1)


def months_between(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every month from the one holding `first` to the one holding `last`, as first days."""
    month, end, out = month_start(first), month_start(last), []
    while month <= end:
        out.append(month)
        month = next_month(month)
    return out


def parse_month(value: str) -> dt.date:
    """`YYYY-MM` (or a full date) → the month's first day; ValueError otherwise."""
    text = value.strip()
    day = dt.date.fromisoformat(f"{text}-01" if len(text) == 7 else text)
    return month_start(day)


def _to_decimal(units: int) -> Decimal:
    return Decimal(int(units)).scaleb(-SCALE)


def _units(value) -> int:
    return int((Decimal(str(value)) * _UNIT).to_integral_value())


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=object) for name in COLUMNS})


def transfer_leg(transaction_id: sa.ColumnElement) -> sa.ColumnElement[bool]:
    """True for a transaction that is one leg of a recorded transfer pair."""
    return sa.exists().where(
        sa.or_(transfers.c.debit_transaction_id == transaction_id, transfers.c.credit_transaction_id == transaction_id)
    )


def ledger_frame(engine: Engine, account_months: Mapping[int, Iterable[dt.date]]) -> pd.DataFrame:
    """The ledger rows of the given account-months, paired transfer legs left out: account_id,
    month, category, currency, units."""
    frames = []
    with engine.connect() as conn:
        for account_id, months in account_months.items():
            months = sorted({month_start(m) for m in months})
            if not months:
                continue
            query = (
                sa.select(
                    transactions.c.account_id,
                    transactions.c.booking_date,
                    transactions.c.amount,
                    transactions.c.currency,
                    sa.func.coalesce(enrichments.c.category, UNCATEGORISED).label("category"),
                )
                .select_from(transactions.outerjoin(enrichments, enrichments.c.transaction_id == transactions.c.id))
                .where(
                    transactions.c.account_id == account_id,
                    transactions.c.booking_date >= months[0],
                    transactions.c.booking_date < next_month(months[-1]),
                    ~transfer_leg(transactions.c.id),
                )
            )
            rows = conn.execute(query).all()
            if not rows:
                continue
            frame = pd.DataFrame(rows, columns=["account_id", "booking_date", "amount", "currency", "category"])
            frame["month"] = [month_start(d) for d in frame["booking_date"]]
            frames.append(frame[frame["month"].isin(months)])
    if not frames:
        return pd.DataFrame(columns=["account_id", "month", "category", "currency", "units"])
    frame = pd.concat(frames, ignore_index=True)
    frame["units"] = frame["amount"].map(_units).astype("int64")
    return frame[["account_id", "month", "category", "currency", "units"]]


def aggregate(ledger: pd.DataFrame) -> pd.DataFrame:
    """Ledger rows → one row per account × month × category × currency (transfers left out)."""
    rows = ledger[ledger["category"] != TRANSFERS]
    if rows.empty:
        return empty_frame()
    rows = rows.assign(
        income_units=rows["units"].clip(lower=0),
        spending_units=(-rows["units"]).clip(lower=0),
    )
    grouped = (
        rows.groupby(KEY, sort=True)
        .agg(income_units=("income_units", "sum"), spending_units=("spending_units", "sum"),
             transactions=("units", "size"))
        .reset_index()
    )
    grouped["income"] = grouped["income_units"].map(_to_decimal)
    grouped["spending"] = grouped["spending_units"].map(_to_decimal)
    grouped["net"] = (grouped["income_units"] - grouped["spending_units"]).map(_to_decimal)
    grouped["transactions"] = grouped["transactions"].astype(int)
    return grouped[COLUMNS]


def compute(engine: Engine, account_months: Mapping[int, Iterable[dt.date]]) -> pd.DataFrame:
    """Monthly spending of the given account-months, straight from the ledger."""
    return aggregate(ledger_frame(engine, account_months))


def refresh(engine: Engine, account_months: Mapping[int, Iterable[dt.date]], *, run_id: str | None = None) -> pd.DataFrame:
    """Compute the given account-months and replace their rows in `monthly_spending`."""
    account_months = {a: sorted({month_start(m) for m in ms}) for a, ms in account_months.items()}
    frame = compute(engine, account_months)
    now = utcnow()
    records = [
        {**{k: row[k] for k in COLUMNS}, "account_id": int(row["account_id"]), "transactions": int(row["transactions"]),
         "run_id": run_id, "computed_at": now}
        for row in frame.to_dict("records")
    ]
    with write_transaction(engine) as conn:
        for account_id, months in account_months.items():
            if months:
                conn.execute(
                    monthly_spending.delete().where(
                        monthly_spending.c.account_id == account_id, monthly_spending.c.month.in_(months)
                    )
                )
        if records:
            conn.execute(monthly_spending.insert(), records)
    return frame


def read(engine: Engine, months: Iterable[dt.date], account_ids: Iterable[int] | None = None) -> pd.DataFrame:
    """Stored rows of `months` (first days), with the account's key and display name."""
    months = sorted({month_start(m) for m in months})
    query = (
        sa.select(
            *(monthly_spending.c[name] for name in COLUMNS),
            monthly_spending.c.computed_at,
            accounts.c.account_key,
            accounts.c.display_name,
        )
        .join(accounts, accounts.c.id == monthly_spending.c.account_id)
        .where(monthly_spending.c.month.in_(months))
    )
    if account_ids is not None:
        query = query.where(monthly_spending.c.account_id.in_(list(account_ids)))
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    columns = [*COLUMNS, "computed_at", "account_key", "display_name"]
    frame = pd.DataFrame([dict(r) for r in rows], columns=columns)
    for name in FIGURES:  # SQLite hands Numeric back as floats-made-Decimal: pin the scale
        frame[name] = [Decimal(str(v)).quantize(Decimal(1).scaleb(-SCALE)) for v in frame[name]]
    frame["transactions"] = frame["transactions"].astype(int)
    return frame.sort_values(KEY, ignore_index=True)


def live(engine: Engine, months: Iterable[dt.date], account_ids: Iterable[int] | None = None) -> pd.DataFrame:
    """The figures of `months` computed from the ledger now, shaped as `read` returns them
    (`computed_at` is this instant)."""
    months = sorted({month_start(m) for m in months})
    query = sa.select(accounts.c.id, accounts.c.account_key, accounts.c.display_name)
    if account_ids is not None:
        query = query.where(accounts.c.id.in_(list(account_ids)))
    with engine.connect() as conn:
        names = {r.id: (r.account_key, r.display_name) for r in conn.execute(query)}
    asof = clock.now()
    frame = compute(engine, {account_id: months for account_id in names})
    frame = frame.assign(
        computed_at=[asof] * len(frame),
        account_key=[names[a][0] for a in frame["account_id"]],
        display_name=[names[a][1] for a in frame["account_id"]],
    )
    frame = frame.sort_values(KEY, ignore_index=True)
    frame.attrs["asof"] = asof
    return frame


def live_month_with_changes(
    engine: Engine, month: dt.date, account_ids: Iterable[int] | None = None
) -> pd.DataFrame:
    """One month's figures from the ledger now, with the change against the month before
    (`None` where the month before is not wholly in the ledger: see `incomplete_months`)."""
    month = month_start(month)
    both = live(engine, [previous_month(month), month], account_ids)
    out = with_changes(both[both["month"] == month], both[both["month"] == previous_month(month)])
    partial = incomplete_months(engine, [previous_month(month)])
    if partial and not out.empty:
        gap = [(a, previous_month(month)) in partial for a in out["account_id"]]
        out["spending_change"] = [None if g else v for g, v in zip(gap, out["spending_change"], strict=True)]
        out["net_change"] = [None if g else v for g, v in zip(gap, out["net_change"], strict=True)]
    out.attrs["asof"] = both.attrs["asof"]
    return out


def incomplete_months(engine: Engine, months: Iterable[dt.date]) -> dict[tuple[int, dt.date], int]:
    """{(account_id, month): days of the month the bank was successfully asked for} for the
    account-months not wholly fetched (a day after today is not fetched yet). Accounts with no
    fetch on record (a ledger filled by other means) are taken as complete."""
    months = sorted({month_start(m) for m in months})
    if not months:
        return {}
    first, end = months[0], next_month(months[-1])
    with engine.connect() as conn:
        fetched = conn.execute(
            sa.select(raw_fetches.c.account_id, raw_fetches.c.window_from, raw_fetches.c.window_to).where(
                raw_fetches.c.kind == "booked", raw_fetches.c.error.is_(None)
            )
        ).all()
    covered: dict[int, set[dt.date]] = {}
    for account_id, start, stop in fetched:
        days = covered.setdefault(account_id, set())
        start, stop = _as_date(start), _as_date(stop)
        day = max(start, first)
        while day <= stop and day < end:
            days.add(day)
            day += dt.timedelta(days=1)
    out: dict[tuple[int, dt.date], int] = {}
    for account_id, days in covered.items():
        for month in months:
            length = (next_month(month) - month).days
            seen = sum(1 for d in days if month_start(d) == month)
            if seen < length:
                out[(account_id, month)] = seen
    return out


def _as_date(value) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def with_changes(current: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """`current` (one month's rows) plus `spending_change` and `net_change` against `previous`
    (the month before). A category present only in the previous month appears with zeros, so its
    drop shows; an account with no rows in the previous month has no change (None)."""
    extra = [c for c in ("account_key", "display_name") if c in current.columns]
    if current.empty and previous.empty:
        return current.assign(spending_change=[], net_change=[])
    group = ["account_id", "category", "currency"]
    month = current["month"].iloc[0] if not current.empty else next_month(previous["month"].iloc[0])
    prev = previous.set_index(group)
    cur = current.set_index(group)
    gone = prev.index.difference(cur.index)
    if len(gone):
        zeros = prev.loc[gone].copy()
        zeros["month"] = month
        for name in FIGURES:
            zeros[name] = Decimal(0).scaleb(-SCALE)
        zeros["transactions"] = 0
        cur = pd.concat([cur, zeros[[c for c in cur.columns if c in zeros.columns]]])
    known = set(previous["account_id"])
    spending_change, net_change = [], []
    for (account_id, category, currency), row in cur.iterrows():
        if account_id not in known:
            spending_change.append(None)
            net_change.append(None)
            continue
        key = (account_id, category, currency)
        before = prev.loc[key] if key in prev.index else None
        spending_change.append(row["spending"] - (before["spending"] if before is not None else 0))
        net_change.append(row["net"] - (before["net"] if before is not None else 0))
    out = cur.assign(spending_change=spending_change, net_change=net_change).reset_index()
    return out[[*COLUMNS, *extra, "spending_change", "net_change"]].sort_values(KEY, ignore_index=True)


def month_with_changes(engine: Engine, month: dt.date, account_ids: Iterable[int] | None = None) -> pd.DataFrame:
    """One month's stored rows with their change against the stored previous month."""
    ids = None if account_ids is None else list(account_ids)
    month = month_start(month)
    both = read(engine, [previous_month(month), month], ids)
    return with_changes(both[both["month"] == month], both[both["month"] == previous_month(month)])


def ledger_months(engine: Engine, month: dt.date, account_ids: Iterable[int] | None = None) -> dict[int, list[dt.date]]:
    """The accounts with ledger rows in `month`: {account_id: [month]}."""
    query = sa.select(transactions.c.account_id).distinct().where(
        transactions.c.booking_date >= month, transactions.c.booking_date < next_month(month)
    )
    if account_ids is not None:
        query = query.where(transactions.c.account_id.in_(list(account_ids)))
    with engine.connect() as conn:
        return {a: [month] for a in conn.execute(query).scalars()}


def ledger_changed_since(engine: Engine, month: dt.date, since: dt.datetime) -> bool:
    """Whether any ledger row or categorisation of `month` was written after `since`."""
    in_month = sa.and_(transactions.c.booking_date >= month, transactions.c.booking_date < next_month(month))
    with engine.connect() as conn:
        loaded = conn.execute(
            sa.select(sa.func.count()).select_from(transactions).where(
                in_month, sa.or_(transactions.c.loaded_at > since, transactions.c.corrected_at > since)
            )
        ).scalar_one()
        relabelled = conn.execute(
            sa.select(sa.func.count())
            .select_from(enrichments.join(transactions, transactions.c.id == enrichments.c.transaction_id))
            .where(in_month, enrichments.c.updated_at > since)
        ).scalar_one()
    return bool(loaded or relabelled)
