"""normalize_row (pure) and normalize_account_days (latest fetch per day → staged / quarantine)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
import sqlalchemy as sa

from bank_pipeline.db.schema import quarantine, staged_transactions
from bank_pipeline.ingest import InvalidRow, fetch_account_days, normalize_account_days, normalize_row
from bank_pipeline_tests.ingest_support import FakeClient, count, examples, make_account, txn

UTC = dt.timezone.utc
D = dt.date(2026, 3, 6)


def _row(**changes):
    row = txn(
        D, -2.99, "GOOGLE PLAY STORE", provider_id="9882ks-00js", merchant="Google play", balance=1238.6
    )
    row.update(changes)
    return row


@pytest.mark.parametrize(
    ("timestamp", "booked_at", "booking_date"),
    [
        ("2026-03-06T00:00:00Z", dt.datetime(2026, 3, 6, tzinfo=UTC), D),
        ("2026-03-06T00:00:00.000Z", dt.datetime(2026, 3, 6, tzinfo=UTC), D),
        ("2026-03-06T14:21:09.123Z", dt.datetime(2026, 3, 6, 14, 21, 9, 123000, tzinfo=UTC), D),
        ("2026-03-06T00:00:00+00:00", dt.datetime(2026, 3, 6, tzinfo=UTC), D),
        ("2026-03-06T12:30:00.1234567+00:00", dt.datetime(2026, 3, 6, 12, 30, 0, 123456, tzinfo=UTC), D),
        # The bank's local midnight in BST is the previous UTC day: the booking date stays local.
        ("2026-03-06T00:00:00+01:00", dt.datetime(2026, 3, 5, 23, tzinfo=UTC), D),
        ("2026-03-06T00:30:00.000+01:00", dt.datetime(2026, 3, 5, 23, 30, tzinfo=UTC), D),
        ("2026-03-06T00:30:00+0100", dt.datetime(2026, 3, 5, 23, 30, tzinfo=UTC), D),
        ("2026-03-06T23:30:00-05:00", dt.datetime(2026, 3, 7, 4, 30, tzinfo=UTC), D),
        # TrueLayer's own examples send no offset: taken as UTC.
        ("2026-03-06T00:00:00", dt.datetime(2026, 3, 6, tzinfo=UTC), D),
        ("2026-03-06", dt.datetime(2026, 3, 6, tzinfo=UTC), D),
    ],
)
def test_every_timestamp_variant(timestamp, booked_at, booking_date):
    row = normalize_row(_row(timestamp=timestamp), account_kind="account")
    assert row.booked_at == booked_at and row.booked_at.utcoffset() == dt.timedelta(0)
    assert row.booking_date == booking_date


def test_account_amounts_keep_the_banks_sign_and_fields():
    debit = normalize_row(_row(), account_kind="account")
    assert debit.amount == Decimal("-2.99") and debit.direction == "debit"
    assert debit.currency == "GBP" and debit.description == "GOOGLE PLAY STORE"
    assert debit.merchant_name == "Google play" and debit.transaction_category == "PURCHASE"
    assert debit.transaction_classification == ["Shopping", "Groceries"]
    assert debit.running_balance == Decimal("1238.6") and debit.running_balance_currency == "GBP"
    assert debit.provider_transaction_id == "9882ks-00js" and debit.normalised_provider_transaction_id
    salary = normalize_row(
        txn(D, 2450.0, "ACME LTD SALARY", category="CREDIT", classification=["Income", "Salary"]),
        account_kind="account",
    )
    assert salary.amount == Decimal("2450.0") and salary.direction == "credit"
    # A refund typed DEBIT by the bank but with a positive amount: the signed amount wins, never abs().
    odd = normalize_row(_row(amount=5.0, transaction_type="DEBIT"), account_kind="account")
    assert odd.amount == Decimal("5.0") and odd.direction == "credit"


def test_openapi_examples_normalise():
    ex = examples()
    rows = [
        normalize_row(r, account_kind="account") for r in ex["GetAccountTransactions200Response"]["results"]
    ]
    assert [r.amount for r in rows] == [Decimal("-2.99"), Decimal("-25.25")]
    assert rows[0].booking_date == dt.date(2018, 3, 6) and rows[0].merchant_name == "Google play"
    cards = [normalize_row(r, account_kind="card") for r in ex["GetCardTransactions200Response"]["results"]]
    assert [c.amount for c in cards] == [Decimal("-24.25"), Decimal("-46.82")]
    assert [c.direction for c in cards] == ["debit", "debit"]
    # The AU example omits the required transaction_classification.
    with pytest.raises(InvalidRow, match="missing required field: transaction_classification"):
        normalize_row(ex["GetAccountTransactionsAU200Response"]["results"][0], account_kind="account")


@pytest.mark.parametrize(
    ("ttype", "sent", "expected"),
    [
        ("DEBIT", 24.25, "-24.25"),  # convention 1: card spending sent positive
        ("DEBIT", -24.25, "-24.25"),  # convention 2: card spending sent signed
        ("CREDIT", -100.0, "100.0"),  # convention 1: a card repayment sent negative
        ("CREDIT", 100.0, "100.0"),  # convention 2: sent signed
    ],
)
def test_card_signs_from_transaction_type_in_both_conventions(ttype, sent, expected):
    row = normalize_row(_row(amount=sent, transaction_type=ttype), account_kind="card")
    assert row.amount == Decimal(expected)
    assert row.direction == ttype.lower()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"amount": None}, "missing required field: amount"),
        ({"amount": "twelve"}, "amount: expected a number, got 'twelve'"),
        ({"amount": True}, "amount: expected a number, got true"),
        ({"currency": "GB"}, "currency: expected a 3-letter ISO 4217 code, got 'GB'"),
        ({"timestamp": "yesterday"}, "timestamp: not an ISO 8601 date-time: 'yesterday'"),
        (
            {"timestamp": "2026-02-30T00:00:00Z"},
            "timestamp: not an ISO 8601 date-time: '2026-02-30T00:00:00Z'",
        ),
        ({"transaction_type": "REFUND"}, "transaction_type: expected DEBIT or CREDIT, got 'REFUND'"),
        (
            {"transaction_classification": "Shopping"},
            "transaction_classification: expected a list of strings",
        ),
        ({"transaction_id": ""}, "transaction_id: expected a non-empty string"),
        ({"description": 42}, "description: expected a string, got 42"),
        (
            {"running_balance": {"amount": "n/a", "currency": "GBP"}},
            "running_balance.amount: expected a number",
        ),
    ],
)
def test_invalid_rows_name_the_field_and_value(changes, reason):
    row = _row()
    for key, value in changes.items():
        if value is None:
            row.pop(key)
        else:
            row[key] = value
    with pytest.raises(InvalidRow) as info:
        normalize_row(row, account_kind="account")
    assert reason in info.value.reason


def test_two_missing_fields_are_both_named():
    row = _row()
    del row["currency"], row["description"]
    with pytest.raises(InvalidRow, match="missing required fields: description, currency"):
        normalize_row(row, account_kind="account")


def _staged(engine, account_id):
    with engine.connect() as conn:
        return conn.execute(
            sa.select(staged_transactions)
            .where(staged_transactions.c.account_id == account_id)
            .order_by(staged_transactions.c.raw_transaction_id)
        ).all()


def test_invalid_rows_are_quarantined_and_the_rest_staged(engine):
    account = make_account(engine)
    good = [txn(D, -2.99, "GOOGLE PLAY STORE"), txn(D, 1500.0, "ACME LTD SALARY", category="CREDIT")]
    bad = _row(currency="pounds", transaction_id="bad-1")
    client = FakeClient(booked=[good[0], bad, good[1]])
    fetch_account_days(engine, client, account, [D], run_id="r1", today=D + dt.timedelta(days=30))
    stats = normalize_account_days(engine, account["id"], [D])
    assert (stats.parsed, stats.quarantined, stats.pending) == (2, 1, 0)
    with engine.connect() as conn:
        q = conn.execute(sa.select(quarantine)).one()
    assert "currency: expected a 3-letter ISO 4217 code, got 'pounds'" in q.reason
    assert json.loads(q.payload)["transaction_id"] == "bad-1"
    assert q.partition_date == D and q.account_id == account["id"]
    staged = _staged(engine, account["id"])
    assert [s.amount for s in staged] == [Decimal("-2.99"), Decimal("1500")]
    assert staged[0].booked_at.replace(tzinfo=UTC) == dt.datetime(2026, 3, 6, tzinfo=UTC)

    again = normalize_account_days(engine, account["id"], [D])
    assert (again.parsed, again.quarantined, again.already_done) == (0, 0, 3)
    assert count(engine, staged_transactions) == 2 and count(engine, quarantine) == 1


def test_latest_fetch_of_a_day_supersedes(engine):
    account = make_account(engine, kind="card")
    today = D + dt.timedelta(days=40)
    first = FakeClient(booked=[txn(D, 12.5, "PRET A MANGER", transaction_type="DEBIT")])
    fetch_account_days(engine, first, account, [D], run_id="r1", today=today)
    # Two days later the bank corrects the amount and posts a late transaction on the same day.
    second = FakeClient(
        booked=[
            txn(D, 13.5, "PRET A MANGER", transaction_type="DEBIT"),
            txn(D, 40.0, "TFL TRAVEL CH", transaction_type="DEBIT"),
        ]
    )
    fetch_account_days(engine, second, account, [D - dt.timedelta(days=1), D], run_id="r2", today=today)
    stats = normalize_account_days(engine, account["id"], [D])
    assert stats.parsed == 2
    assert sorted(s.amount for s in _staged(engine, account["id"])) == [Decimal("-40"), Decimal("-13.5")]


def test_pending_rows_are_staged_from_the_latest_pending_fetch(engine):
    account = make_account(engine)
    today = D
    client = FakeClient(pending=[txn(D, -3.2, "COSTA COFFEE", npti=None)])
    fetch_account_days(engine, client, account, [D], run_id="r1", today=today)
    client.pending = [txn(D, -3.2, "COSTA COFFEE", npti=None), txn(D, -9.99, "NETFLIX.COM", npti=None)]
    fetch_account_days(engine, client, account, [D], run_id="r2", today=today)
    stats = normalize_account_days(engine, account["id"], [D])
    assert (stats.parsed, stats.pending) == (2, 2)
    assert {s.status for s in _staged(engine, account["id"])} == {"pending"}
