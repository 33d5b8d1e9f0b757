"""Each partition's own figures (an account-day), for the Dagster UI's materialization metadata."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import Engine

from bank_pipeline.db.schema import raw_fetches, raw_transactions, transactions
from bank_pipeline.ingest._db import as_date


def raw_rows_by_day(engine: Engine, account_id: int, days: list[dt.date]) -> dict[dt.date, dict]:
    """Rows landed for each day by the latest successful booked fetch covering it (what later
    stages read, whether this run fetched it or replayed it)."""
    from bank_pipeline.ingest._db import latest_booked_fetches

    if not days:
        return {}
    with engine.connect() as conn:
        latest = latest_booked_fetches(conn, account_id, days)
        fetch_ids = sorted(set(latest.values()))
        counts: dict[tuple[int, dt.date], int] = {}
        runs: dict[int, str] = {}
        if fetch_ids:
            grouped = conn.execute(
                sa.select(raw_transactions.c.fetch_id, raw_transactions.c.partition_date, sa.func.count())
                .where(raw_transactions.c.fetch_id.in_(fetch_ids), raw_transactions.c.status == "booked")
                .group_by(raw_transactions.c.fetch_id, raw_transactions.c.partition_date)
            ).all()
            counts = {(fid, as_date(day)): n for fid, day, n in grouped}
            fetched = conn.execute(
                sa.select(raw_fetches.c.id, raw_fetches.c.run_id).where(raw_fetches.c.id.in_(fetch_ids))
            ).all()
            runs = {fid: run_id or "" for fid, run_id in fetched}
    return {
        day: {"raw_rows": counts.get((latest[day], day), 0), "fetched_by_run": runs.get(latest[day], "")}
        if day in latest
        else {"raw_rows": 0, "fetched_by_run": ""}
        for day in days
    }


def ledger_rows_by_day(engine: Engine, account_id: int, days: list[dt.date], *, run_id: str) -> dict[dt.date, dict]:
    """For each day: transactions in the ledger, and how many of them this run inserted."""
    if not days:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                transactions.c.booking_date,
                sa.func.count(),
                sa.func.sum(sa.case((transactions.c.run_id == run_id, 1), else_=0)),
            )
            .where(transactions.c.account_id == account_id, transactions.c.booking_date.between(days[0], days[-1]))
            .group_by(transactions.c.booking_date)
        )
        found = {as_date(day): (int(total), int(mine or 0)) for day, total, mine in rows}
    return {day: {"ledger_rows": found.get(day, (0, 0))[0], "inserted": found.get(day, (0, 0))[1]} for day in days}
