"""load_account_days: insert-ignore into the ledger, reruns and overlaps add nothing, pending sets."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import sqlalchemy as sa

from bank_pipeline.db.schema import accounts, pending_transactions, transactions
from bank_pipeline.ingest import (
    dedup_account_days,
    fetch_account_days,
    load_account_days,
    normalize_account_days,
)
from bank_pipeline.ingest.load import PendingPolicy, match_pending
from bank_pipeline_tests.fixtures.clock import TODAY  # noqa: E402  (the pinned day)
from bank_pipeline_tests.ingest_support import (
    FakeClient,
    count,
    days_between,
    make_account,
    run_pipeline,
    txn,
)

JAN = dt.date(2026, 1, 1)


def _month(n_per_day: int = 2) -> list[dict]:
    rows = []
    for day in days_between(JAN, dt.date(2026, 1, 31)):
        rows.append(txn(day, -4.35, "PRET A MANGER 123", merchant="Pret A Manger"))
        if n_per_day > 1:
            rows.append(txn(day, -2.5 - day.day, "TFL TRAVEL CH", npti=None, provider_id=f"tfl-{day}"))
    rows.append(
        txn(dt.date(2026, 1, 28), 2450.0, "ACME LTD SALARY", category="CREDIT", classification=["Income"])
    )
    return rows


def test_load_then_rerun_adds_zero_rows(engine):
    account = make_account(engine)
    client = FakeClient(booked=_month())
    days = days_between(JAN, dt.date(2026, 1, 31))
    *_, load = run_pipeline(engine, client, account, days, today=TODAY)
    assert (load.inserted, load.skipped) == (63, 0)
    with engine.connect() as conn:
        ledger = conn.execute(
            sa.select(transactions).order_by(transactions.c.booking_date, transactions.c.amount)
        ).all()
        synced = conn.execute(
            sa.select(accounts.c.last_synced_at).where(accounts.c.id == account["id"])
        ).scalar()
    assert synced is not None
    assert sum(r.amount for r in ledger) == Decimal("2450") - sum(
        Decimal("4.35") + Decimal("2.5") + d for d in range(1, 32)
    )
    salary = next(r for r in ledger if r.amount > 0)
    assert salary.direction == "credit" and salary.run_id == "run-1" and salary.raw_transaction_id

    # Same stages again without refetching, then with a fresh fetch: nothing new.
    assert load_account_days(engine, account["id"], days, run_id="run-2").inserted == 0
    *_, load = run_pipeline(engine, client, account, days, run_id="run-3", today=TODAY)
    assert (load.inserted, load.skipped) == (0, 63)
    assert count(engine, transactions) == 63


def test_overlapping_windows_add_zero_rows(engine):
    account = make_account(engine)
    client = FakeClient(booked=_month())
    run_pipeline(engine, client, account, days_between(JAN, dt.date(2026, 1, 20)), today=TODAY)
    assert count(engine, transactions) == 40
    *_, load = run_pipeline(
        engine, client, account, days_between(dt.date(2026, 1, 10), dt.date(2026, 1, 31)), today=TODAY
    )
    assert load.inserted == 23  # only Jan 21–31 (22 rows) and the salary are new
    assert count(engine, transactions) == 63


def test_a_late_posting_loads_into_an_already_loaded_day(engine):
    account = make_account(engine, kind="card")
    day = dt.date(2026, 11, 16)
    client = FakeClient(booked=[txn(day, 12.0, "DELIVEROO", transaction_type="DEBIT")])
    run_pipeline(engine, client, account, days_between(day, TODAY), today=TODAY)
    client.booked.append(txn(day, 31.2, "SHELL PETROL 4411", transaction_type="DEBIT"))  # posted on Wednesday
    *_, load = run_pipeline(engine, client, account, days_between(day, TODAY), run_id="run-2", today=TODAY)
    assert (load.inserted, load.skipped) == (1, 1)
    with engine.connect() as conn:
        amounts = sorted(conn.execute(sa.select(transactions.c.amount)).scalars())
    assert amounts == [Decimal("-31.2"), Decimal("-12")]


def test_pending_then_booked_leaves_one_ledger_row_and_no_pending_copy(engine):
    account = make_account(engine)
    yesterday = TODAY - dt.timedelta(days=1)
    days = [yesterday, TODAY]
    coffee = txn(yesterday, -3.2, "COSTA COFFEE", npti=None, transaction_id="pending-1")
    netflix = txn(TODAY, -9.99, "NETFLIX.COM", npti=None, transaction_id="pending-2")
    client = FakeClient(pending=[coffee, netflix])
    *_, load = run_pipeline(engine, client, account, days, today=TODAY)
    assert (load.inserted, load.pending_replaced) == (0, 2)

    # The coffee books with a new id and date; the bank still lists it as pending for a while.
    booked = txn(TODAY, -3.2, "COSTA COFFEE", transaction_id="booked-77", npti="txn-77")
    client.booked = [booked]
    *_, load = run_pipeline(engine, client, account, days, run_id="run-2", today=TODAY)
    assert (load.inserted, load.pending_replaced, load.pending_matched) == (1, 1, 1)
    with engine.connect() as conn:
        pending = conn.execute(sa.select(pending_transactions.c.transaction_id)).scalars().all()
    assert pending == ["pending-2"]

    # Next day the pending list no longer has it: still one ledger row, one pending (netflix booked too).
    client.pending = []
    client.booked = [booked, txn(TODAY, -9.99, "NETFLIX.COM", npti="txn-nf")]
    *_, load = run_pipeline(engine, client, account, days, run_id="run-3", today=TODAY)
    assert (load.inserted, load.pending_replaced) == (1, 0)
    assert count(engine, transactions) == 2 and count(engine, pending_transactions) == 0


def _pending_row(day, amount, desc, direction=None, currency="GBP"):
    return dict(
        booking_date=day,
        amount=Decimal(amount),
        currency=currency,
        description=desc,
        direction=direction or ("debit" if Decimal(amount) < 0 else "credit"),
    )


def test_pending_matching_is_one_to_one_forward_in_time_and_needs_amount_and_description():
    row, d = _pending_row, TODAY
    pending = [
        row(d, "-40.00", "DISHOOM LONDON"),  # books 2 days later with a 12.5% service charge
        row(d, "-3.20", "COSTA COFFEE"),  # books as "COSTA COFFEE 1234": same amount
        row(d, "-3.20", "COSTA COFFEE"),  # a second coffee: only one booked, so one stays
        row(d, "-2.95", "CAFFE NERO CD 9991 02DEC26"),  # a purchase booked BEFORE it is another one
        row(d, "-50.00", "ASOS.COM"),  # same amount, other shop: not this one
        row(d, "-9.99", "NETFLIX.COM"),  # booked 6 days later: too late to be the same
        row(d, "-12.00", "UBER TRIP"),  # books at twice the amount: not a tip, stays pending
    ]
    booked = [
        row(d + dt.timedelta(days=2), "-45.00", "DISHOOM  LONDON"),
        row(d + dt.timedelta(days=1), "-3.20", "COSTA COFFEE 1234"),
        row(d - dt.timedelta(days=3), "-2.95", "CAFFE NERO CD 9991 29NOV26"),
        row(d, "-50.00", "ZARA UK"),
        row(d + dt.timedelta(days=6), "-9.99", "NETFLIX.COM"),
        row(d, "-24.00", "UBER TRIP"),
        row(d, "3.20", "COSTA COFFEE"),  # a refund: other direction
        row(d, "-3.20", "COSTA COFFEE", currency="EUR"),  # other currency
    ]
    assert match_pending(pending, booked) == {0, 1}


def test_the_closest_pair_wins_whatever_the_order():
    row, d = _pending_row, TODAY
    pending = [row(d, "-10.00", "PRET A MANGER"), row(d, "-12.00", "PRET A MANGER")]
    booked = [row(d, "-12.00", "PRET A MANGER")]
    assert match_pending(pending, booked) == {1}
    policy = PendingPolicy(match_days=1)
    assert match_pending([row(d, "-9.99", "NETFLIX.COM")], [row(d + dt.timedelta(days=2), "-9.99", "NETFLIX.COM")], policy) == set()


def test_old_pending_rows_are_kept_and_flagged_stale(engine):
    account = make_account(engine)
    old = txn(TODAY - dt.timedelta(days=12), -80.0, "HOTEL PREAUTH", npti=None)
    fresh = txn(TODAY, -9.99, "NETFLIX.COM", npti=None)
    client = FakeClient(pending=[old, fresh])
    *_, load = run_pipeline(engine, client, account, [TODAY], today=TODAY)
    assert (load.pending_replaced, load.pending_stale) == (2, 1)
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.select(pending_transactions.c.description, pending_transactions.c.stale)).all())
    assert rows == {"HOTEL PREAUTH": True, "NETFLIX.COM": False}

    # The age is a setting: with stale_days=14 the 12-day-old pre-authorisation is not stale yet.
    load = load_account_days(engine, account["id"], [TODAY], run_id="run-2", pending_policy=PendingPolicy(stale_days=14))
    assert load.pending_stale == 0
    with engine.connect() as conn:
        assert not any(conn.execute(sa.select(pending_transactions.c.stale)).scalars())


def test_concurrent_loads_add_each_row_once(engine):
    account = make_account(engine)
    days = days_between(JAN, dt.date(2026, 1, 31))
    client = FakeClient(booked=_month())
    fetch_account_days(engine, client, account, days, run_id="r1", today=TODAY)
    normalize_account_days(engine, account["id"], days)
    dedup_account_days(engine, account["id"], days)
    results, errors = [], []
    barrier = threading.Barrier(3)

    def load(run_id):
        try:
            barrier.wait()
            results.append(load_account_days(engine, account["id"], days, run_id=run_id))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(f"run-{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(r.inserted for r in results) == [0, 0, 63]
    assert count(engine, transactions) == 63


def test_load_keys_rows_the_dedup_stage_has_not_seen(engine):
    account = make_account(engine)
    client = FakeClient(booked=_month(1))
    days = days_between(JAN, dt.date(2026, 1, 31))
    fetch_account_days(engine, client, account, days, run_id="r1", today=TODAY)
    normalize_account_days(engine, account["id"], days)
    assert load_account_days(engine, account["id"], days, run_id="r1").inserted == 32


def test_scattered_days_load_only_those_days(engine):
    account = make_account(engine)
    year = days_between(JAN, dt.date(2026, 4, 30))
    client = FakeClient(booked=[txn(day, -1.0 - day.day, "TFL TRAVEL CH") for day in year])
    scattered = year[::2]  # 60 one-day ranges
    *_, load = run_pipeline(engine, client, account, scattered, today=TODAY)
    assert len(client.calls) == 60 and load.inserted == 60
    with engine.connect() as conn:
        loaded = set(conn.execute(sa.select(transactions.c.booking_date)).scalars())
    assert loaded == set(scattered)
