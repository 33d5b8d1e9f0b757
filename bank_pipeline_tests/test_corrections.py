"""A transaction re-sent under the same stable id with other content corrects the ledger row."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa

from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import category_overrides, enrichments, transaction_history, transactions
from bank_pipeline_tests.fixtures.clock import TODAY  # noqa: E402  (the pinned day)
from bank_pipeline_tests.ingest_support import (
    FakeClient,
    count,
    days_between,
    make_account,
    run_pipeline,
    txn,
)

DAYS = days_between(dt.date(2026, 11, 1), dt.date(2026, 11, 10))


def _ledger(engine) -> dict[str, tuple]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(transactions)).all()
    return {r.normalised_provider_transaction_id: (r.booking_date, r.amount, r.description) for r in rows}


def _enrich(engine, ids, source="model"):
    with engine.begin() as conn:
        conn.execute(
            enrichments.insert(),
            [dict(transaction_id=i, category="dining", source=source, updated_at=utcnow()) for i in ids],
        )


def test_a_corrected_amount_description_or_date_updates_the_row_and_keeps_history(engine):
    account = make_account(engine)
    rows = [txn(day, -1.0 - day.day, f"SHOP {day.day}", npti=f"txn-{day.day}") for day in DAYS]
    rows[2] = txn(DAYS[2], -3.65, "CAFFE NERO", npti="txn-nero")
    rows[4] = txn(DAYS[4], -7.0, "TFL", npti="txn-tfl")
    rows[6] = txn(DAYS[6], -12.0, "BOOTS", npti="txn-boots")
    client = FakeClient(booked=rows)
    run_pipeline(engine, client, account, DAYS, today=TODAY)
    with engine.connect() as conn:
        ids = dict(conn.execute(sa.select(transactions.c.normalised_provider_transaction_id, transactions.c.id)).all())
    _enrich(engine, [ids["txn-nero"], ids["txn-tfl"], ids["txn-boots"]])
    with engine.begin() as conn:  # the user categorised the TfL row themselves
        conn.execute(category_overrides.insert().values(transaction_id=ids["txn-tfl"], category="transport", created_at=utcnow()))

    client.booked = list(rows)
    client.booked[2] = txn(DAYS[2], -36.50, "CAFFE NERO LONDON", npti="txn-nero")
    client.booked[4] = txn(DAYS[4], -7.5, "TFL", npti="txn-tfl")
    client.booked[6] = txn(DAYS[7], -12.0, "BOOTS", npti="txn-boots")  # posted a day later
    _, _, dedup, load = run_pipeline(engine, client, account, DAYS, run_id="run-2", today=TODAY)
    assert (dedup.corrected, load.corrected, load.inserted) == (3, 3, 0)
    ledger = _ledger(engine)
    assert ledger["txn-nero"] == (DAYS[2], Decimal("-36.5"), "CAFFE NERO LONDON")
    assert ledger["txn-tfl"][1] == Decimal("-7.5") and ledger["txn-boots"][0] == DAYS[7]
    assert count(engine, transactions) == 10
    with engine.connect() as conn:
        history = conn.execute(sa.select(transaction_history).where(transaction_history.c.transaction_id == ids["txn-nero"])).one()
        enriched = set(conn.execute(sa.select(enrichments.c.transaction_id)).scalars())
    assert (history.amount, history.description, history.run_id) == (Decimal("-3.65"), "CAFFE NERO", "run-2")
    # Enrichment redone for corrected rows, but the user's override stays.
    assert enriched == {ids["txn-tfl"]}

    # A rerun of the same data corrects nothing more and adds no history.
    *_, load = run_pipeline(engine, client, account, DAYS, run_id="run-3", today=TODAY)
    assert (load.corrected, load.inserted) == (0, 0) and count(engine, transaction_history) == 3
    assert _ledger(engine) == ledger

    # The bank corrects the same row again: a second history version.
    client.booked[2] = txn(DAYS[2], -36.05, "CAFFE NERO LONDON", npti="txn-nero")
    *_, load = run_pipeline(engine, client, account, DAYS, run_id="run-4", today=TODAY)
    assert load.corrected == 1 and _ledger(engine)["txn-nero"][1] == Decimal("-36.05")
    with engine.connect() as conn:
        amounts = conn.execute(
            sa.select(transaction_history.c.amount)
            .where(transaction_history.c.transaction_id == ids["txn-nero"])
            .order_by(transaction_history.c.id)
        ).scalars().all()
    assert amounts == [Decimal("-3.65"), Decimal("-36.5")]


def test_an_unchanged_resend_is_a_duplicate_not_a_correction(engine):
    account = make_account(engine)
    rows = [txn(day, -2.0, "SAME", npti=f"txn-{day.day}") for day in DAYS]
    client = FakeClient(booked=rows)
    run_pipeline(engine, client, account, DAYS, today=TODAY)
    client.booked = [dict(r, transaction_id=r["transaction_id"] + "-new") for r in rows]
    _, _, dedup, load = run_pipeline(engine, client, account, DAYS, run_id="run-2", today=TODAY)
    assert (dedup.corrected, dedup.duplicate, load.corrected, load.inserted) == (0, 10, 0, 0)
    assert count(engine, transaction_history) == 0
