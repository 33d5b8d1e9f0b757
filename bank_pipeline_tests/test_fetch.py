"""fetch_account_days: coalescing, one call per window, pending near today, budget, landing."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from bank_pipeline.db.schema import raw_fetches, raw_transactions
from bank_pipeline.ingest import fetch_account_days
from bank_pipeline.ingest.fetch import FetchDeferred, coalesce_days, plan_windows
from bank_pipeline.limits import UnattendedBudget
from bank_pipeline.truelayer.errors import ServerError
from bank_pipeline_tests.ingest_support import FakeClient, count, days_between, make_account, txn

JAN = dt.date(2026, 1, 1)
LATER = dt.date(2027, 6, 1)  # "today" far from the requested days: no pending call


def test_coalescing_and_windows_are_pure():
    days = days_between(JAN, dt.date(2026, 1, 10)) + days_between(dt.date(2026, 1, 20), dt.date(2026, 1, 25))
    assert coalesce_days(list(reversed(days))) == [
        (JAN, dt.date(2026, 1, 10)),
        (dt.date(2026, 1, 20), dt.date(2026, 1, 25)),
    ]
    assert len(plan_windows(days_between(JAN, dt.date(2026, 12, 31)), 90)) == 5


def test_two_ranges_make_two_calls(engine):
    account = make_account(engine)
    client = FakeClient(booked=[txn("2026-01-05", -4.5), txn("2026-01-15", -8.0), txn("2026-01-21", -12.0)])
    days = days_between(JAN, dt.date(2026, 1, 10)) + days_between(dt.date(2026, 1, 20), dt.date(2026, 1, 25))
    stats = fetch_account_days(engine, client, account, days, run_id="r1", today=LATER)
    assert client.calls == [
        ("transactions", "account", account["provider_account_id"], JAN, dt.date(2026, 1, 10)),
        (
            "transactions",
            "account",
            account["provider_account_id"],
            dt.date(2026, 1, 20),
            dt.date(2026, 1, 25),
        ),
    ]
    assert (stats.api_calls, stats.windows, stats.booked_rows, stats.pending_rows) == (2, 2, 2, 0)
    assert stats.as_metadata()["windows"] == 2


def test_a_year_is_five_windows_and_lands_everything(engine):
    account = make_account(engine, kind="card")
    rows = [
        txn(day, -3.0 - day.day, "AMAZON.CO.UK*2R4") for day in days_between(JAN, dt.date(2026, 12, 31))[::7]
    ]
    client = FakeClient(booked=rows, attempts=2)
    days = days_between(JAN, dt.date(2026, 12, 31))
    stats = fetch_account_days(engine, client, account, days, run_id="r1", today=LATER)
    windows = [(c[3], c[4]) for c in client.calls]
    assert (
        len(windows) == 5
        and windows[0] == (JAN, dt.date(2026, 3, 31))
        and windows[-1][1] == dt.date(2026, 12, 31)
    )
    assert all(c[1] == "card" for c in client.calls)
    assert (stats.windows, stats.api_calls, stats.booked_rows) == (5, 10, len(rows))
    assert count(engine, raw_fetches) == 5 and count(engine, raw_transactions) == len(rows)
    with engine.connect() as conn:
        fetch = conn.execute(sa.select(raw_fetches).order_by(raw_fetches.c.id)).first()
    assert (
        fetch.api_calls == 2 and fetch.run_id == "r1" and fetch.kind == "booked" and fetch.http_status == 200
    )
    assert json.loads(fetch.body)["status"] == "Succeeded"


def test_landing_keeps_body_positions_and_local_partition_dates(engine):
    account = make_account(engine)
    day = dt.date(2026, 6, 1)
    rows = [
        txn(day, -2.99, "GOOGLE PLAY STORE", time="T00:30:00+01:00"),  # UTC instant is 31 May
        {"transaction_id": "no-timestamp", "amount": -1},  # lands anyway; dated by the window
    ]
    client = FakeClient()
    client.transactions = lambda *a: client._response(rows)
    fetch_account_days(engine, client, account, [day, day + dt.timedelta(days=1)], run_id="r1", today=LATER)
    with engine.connect() as conn:
        fetch = conn.execute(sa.select(raw_fetches)).one()
        landed = conn.execute(sa.select(raw_transactions).order_by(raw_transactions.c.position)).all()
    assert fetch.body == json.dumps({"results": rows, "status": "Succeeded"})
    assert (fetch.window_from, fetch.window_to) == (day, day + dt.timedelta(days=1))
    assert [r.position for r in landed] == [0, 1]
    assert [r.partition_date for r in landed] == [day, day + dt.timedelta(days=1)]
    assert [json.loads(r.payload) for r in landed] == rows
    assert {r.status for r in landed} == {"booked"}


@pytest.mark.date_sensitive
def test_pending_only_when_the_range_reaches_today(engine):
    account = make_account(engine)
    today = dt.date(2026, 11, 20)
    client = FakeClient(pending=[txn(today, -3.2, "COSTA COFFEE")])
    fetch_account_days(
        engine,
        client,
        account,
        days_between(dt.date(2026, 1, 1), dt.date(2026, 1, 31)),
        run_id="a",
        today=today,
    )
    assert [c[0] for c in client.calls] == ["transactions"]
    client.calls.clear()
    stats = fetch_account_days(
        engine, client, account, [today - dt.timedelta(days=2), today], run_id="b", today=today
    )
    assert [c[0] for c in client.calls] == ["transactions", "transactions", "pending"]
    assert stats.pending_rows == 1
    client.calls.clear()
    fetch_account_days(engine, client, account, [today], run_id="c", today=today, include_pending=False)
    assert [c[0] for c in client.calls] == ["transactions"]
    with engine.connect() as conn:
        pending = conn.execute(
            sa.select(raw_transactions).where(raw_transactions.c.status == "pending")
        ).all()
    assert len(pending) == 1 and pending[0].partition_date == today


@pytest.mark.date_sensitive
def test_budget_is_reserved_per_unattended_call(engine):
    account = make_account(engine)
    today = dt.date(2026, 11, 20)
    budget = UnattendedBudget(
        engine, daily_limit=4, clock=lambda: dt.datetime(2026, 11, 20, 9, tzinfo=dt.timezone.utc)
    )
    client = FakeClient()
    days = days_between(dt.date(2026, 1, 1), dt.date(2026, 12, 31))[:200]  # 3 windows
    fetch_account_days(engine, client, account, days, run_id="r1", today=today, budget=budget)
    assert budget.remaining(account["id"]) == 1
    with pytest.raises(FetchDeferred, match="fetched 1 of 3 window.*resets at 00:00 UTC"):
        fetch_account_days(engine, client, account, days, run_id="r2", today=today, budget=budget)
    assert len(client.calls) == 4  # the fifth call was never made
    # With the user present (X-PSU-IP) calls are attended and do not count.
    attended = FakeClient(psu_ip="203.0.113.7")
    fetch_account_days(engine, attended, account, days, run_id="r3", today=today, budget=budget)
    assert len(attended.calls) == 3 and budget.remaining(account["id"]) == 0


def test_an_error_is_landed_and_raised(engine):
    account = make_account(engine)
    client = FakeClient()
    client.fail_with = ServerError(
        "TrueLayer GET /accounts/x/transactions failed", status_code=503, error="provider_error", attempts=5
    )
    with pytest.raises(ServerError):
        fetch_account_days(engine, client, account, [JAN], run_id="r1", today=LATER)
    with engine.connect() as conn:
        fetch = conn.execute(sa.select(raw_fetches)).one()
    assert fetch.http_status == 503 and fetch.api_calls == 5 and "provider_error" in fetch.error
    assert fetch.body is None
