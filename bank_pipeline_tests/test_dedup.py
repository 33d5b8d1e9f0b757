"""dedup keys: normalised id → provider id → content hash with occurrence index; new vs duplicate."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa

from bank_pipeline.db.schema import staged_transactions, transactions
from bank_pipeline.ingest import dedup_account_days, fetch_account_days, normalize_account_days
from bank_pipeline.ingest.dedup import dedup_keys
from bank_pipeline_tests.ingest_support import FakeClient, count, make_account, run_pipeline, txn

D = dt.date(2026, 3, 6)
TODAY = dt.date(2026, 6, 1)


def _keyed(engine, account_id):
    with engine.connect() as conn:
        return conn.execute(
            sa.select(
                staged_transactions.c.dedup_key,
                staged_transactions.c.dedup_status,
                staged_transactions.c.description,
            )
            .where(staged_transactions.c.account_id == account_id)
            .order_by(staged_transactions.c.raw_transaction_id)
        ).all()


def test_key_order_is_normalised_id_then_provider_id_then_hash():
    base = dict(booking_date=D, amount=Decimal("-2.99"), currency="GBP", description="GOOGLE PLAY STORE")
    rows = [
        dict(
            base,
            normalised_provider_transaction_id="txn-ajdifh38fheu5hgue",
            provider_transaction_id="9882ks-00js",
        ),
        dict(base, normalised_provider_transaction_id=None, provider_transaction_id="9882ks-00js"),
        dict(base, normalised_provider_transaction_id=None, provider_transaction_id=None),
    ]
    keys = dedup_keys(7, rows)
    assert keys[0] == "a7:n:txn-ajdifh38fheu5hgue"
    assert keys[1] == "a7:p:9882ks-00js"
    assert keys[2].startswith("a7:h:") and len(keys[2]) == len("a7:h:") + 64
    # Namespaced by account: the same ids on another account give other keys.
    assert not set(keys) & set(dedup_keys(8, rows))
    # An id too long for the key column is hashed.
    long = dedup_keys(
        7, [dict(base, normalised_provider_transaction_id="x" * 256, provider_transaction_id=None)]
    )
    assert long[0].startswith("a7:n#:") and len(long[0]) <= 128


def test_hash_normalises_description_and_amount_and_counts_occurrences():
    coffee = dict(
        booking_date=D, currency="GBP", normalised_provider_transaction_id=None, provider_transaction_id=None
    )
    a = dict(coffee, amount=Decimal("-3.2"), description="COSTA  COFFEE\tLONDON")
    b = dict(coffee, amount=Decimal("-3.2000"), description="costa coffee london")
    k1, k2 = dedup_keys(1, [a, b])
    assert k1 != k2  # two identical coffees on one day: occurrence 0 and 1
    assert dedup_keys(1, [b]) == [k1]  # same content, same first occurrence
    other_day = dedup_keys(1, [dict(a, booking_date=D + dt.timedelta(days=1))])
    assert other_day[0] not in (k1, k2)


def test_two_identical_coffees_stay_two_and_refetching_adds_none(engine):
    account = make_account(engine)
    coffees = [txn(D, -3.2, "COSTA COFFEE", npti=None, time="T08:01:00Z") for _ in range(2)]
    client = FakeClient(booked=coffees)
    *_, dedup, load = run_pipeline(engine, client, account, [D], today=TODAY)
    assert (dedup.new, dedup.duplicate) == (2, 0) and load.inserted == 2
    # Refetched: TrueLayer hands out new transaction_ids, the content hash still matches.
    client.booked = [dict(c, transaction_id=c["transaction_id"] + "-v2") for c in coffees]
    *_, dedup, load = run_pipeline(engine, client, account, [D], run_id="run-2", today=TODAY)
    assert (dedup.new, dedup.duplicate) == (0, 2) and load.inserted == 0
    # A third coffee the same day is new.
    client.booked.append(txn(D, -3.2, "COSTA COFFEE", npti=None))
    *_, dedup, load = run_pipeline(engine, client, account, [D], run_id="run-3", today=TODAY)
    assert (dedup.new, dedup.duplicate, load.inserted) == (1, 2, 1)
    assert count(engine, transactions) == 3


def test_unstable_transaction_id_is_never_the_key(engine):
    account = make_account(engine)
    rows = [
        txn(D, -25.25, "PAYPAL EBAY", npti="txn-2jdh8whf8w9rh3udh"),
        txn(D, -46.82, "TALKTALK TELECOM", npti=None, provider_id="33b5555724"),
    ]
    client = FakeClient(booked=rows)
    run_pipeline(engine, client, account, [D], today=TODAY)
    # Next fetch: new transaction_ids and the description reworded — the ids still match, so the
    # rows are the same transactions, corrected (not new ones).
    client.booked = [
        dict(r, transaction_id=f"changed-{i}", description=r["description"] + " REF 1")
        for i, r in enumerate(rows)
    ]
    *_, dedup, load = run_pipeline(engine, client, account, [D], run_id="run-2", today=TODAY)
    assert (dedup.new, dedup.duplicate, dedup.corrected, load.inserted, load.corrected) == (0, 0, 2, 0, 2)
    with engine.connect() as conn:
        keys = sorted(conn.execute(sa.select(transactions.c.dedup_key)).scalars())
    assert keys == [f"a{account['id']}:n:txn-2jdh8whf8w9rh3udh", f"a{account['id']}:p:33b5555724"]


def test_duplicates_within_a_batch_and_rerun_is_stable(engine):
    account = make_account(engine)
    row = txn(D, -9.99, "NETFLIX.COM", npti="txn-netflix-0306")
    client = FakeClient(booked=[row, dict(row, transaction_id="other")])  # listed twice by the bank
    fetch_account_days(engine, client, account, [D], run_id="r1", today=TODAY)
    normalize_account_days(engine, account["id"], [D])
    first = dedup_account_days(engine, account["id"], [D])
    assert (first.new, first.duplicate, first.within_batch) == (1, 1, 1)
    again = dedup_account_days(engine, account["id"], [D])
    assert (again.new, again.duplicate) == (1, 1)
    assert [k.dedup_status for k in _keyed(engine, account["id"])] == ["new", "duplicate"]


def test_same_ids_on_two_accounts_both_load(engine):
    row = txn(D, -2.99, "GOOGLE PLAY STORE", npti="txn-ajdifh38fheu5hgue")
    for _ in range(2):
        account = make_account(engine)
        *_, load = run_pipeline(engine, FakeClient(booked=[row]), account, [D], today=TODAY)
        assert load.inserted == 1
    assert count(engine, transactions) == 2


def test_pending_rows_are_not_keyed(engine):
    account = make_account(engine)
    client = FakeClient(pending=[txn(TODAY, -3.2, "COSTA COFFEE", npti=None)])
    fetch_account_days(engine, client, account, [TODAY], run_id="r1", today=TODAY)
    normalize_account_days(engine, account["id"], [TODAY])
    stats = dedup_account_days(engine, account["id"], [TODAY])
    assert (stats.new, stats.duplicate) == (0, 0)
    assert [k.dedup_key for k in _keyed(engine, account["id"])] == [None]
