"""Bad rows never fail a step: control characters, unknown currencies, repeated bad rows.

Through the ingest stages with a recording fake client, on SQLite and PostgreSQL (where a NUL in a
text column is an error), plus the plain functions.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from bank_pipeline import quality
from bank_pipeline.db.schema import (
    quarantine,
    quarantine_sightings,
    raw_fetches,
    raw_transactions,
    staged_transactions,
    transactions,
)
from bank_pipeline.ingest import InvalidRow, normalize_row
from bank_pipeline.ingest.normalize import quarantine_key
from bank_pipeline.ingest.text import clean_text, is_iso_currency
from bank_pipeline_tests.fixtures.clock import TODAY  # noqa: E402  (the pinned day)
from bank_pipeline_tests.ingest_support import (
    FakeClient,
    count,
    days_between,
    make_account,
    run_pipeline,
    txn,
)

DAYS = days_between(dt.date(2026, 11, 1), dt.date(2026, 11, 14))


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("A\x00B", "AB"),
        ("CAFFE NERO\r\nCD 9991", "CAFFE NERO CD 9991"),
        ("TAB\there", "TAB here"),
        ("\x1b[31mRED\x1b[0m", "[31mRED[0m"),
        ("BELL\x07\x7f\x9b", "BELL"),
        ("lone \ud800 surrogate", "lone \ufffd surrogate"),
        ("CAFÉ ☕ 2,95 £", "CAFÉ ☕ 2,95 £"),
    ],
)
def test_clean_text_is_deterministic_and_leaves_clean_text_alone(raw, clean):
    assert clean_text(raw) == clean
    assert clean_text(clean_text(raw)) == clean


def test_currency_codes_come_from_the_static_iso_list():
    assert is_iso_currency("GBP") and is_iso_currency("eur") and is_iso_currency("JPY")
    assert not is_iso_currency("XYZ") and not is_iso_currency("ABC")
    row = txn(TODAY, -1.0, "X")
    with pytest.raises(InvalidRow, match="currency: not an ISO 4217 currency code: 'XYZ'"):
        normalize_row({**row, "currency": "XYZ"}, account_kind="account")


def test_normalize_row_cleans_every_text_field_and_flags_it():
    row = txn(TODAY, -2.95, "CAFFE\x00 NERO\n", merchant="Caffe\x00Nero", provider_id="P\x001")
    row["transaction_classification"] = ["Food\x00", "Coffee"]
    out = normalize_row(row, account_kind="account", account_currency="GBP")
    assert out.description == "CAFFE NERO " and out.merchant_name == "CaffeNero"
    assert out.provider_transaction_id == "P1" and out.transaction_classification == ["Food", "Coffee"]
    assert out.flags == "text_cleaned"
    assert normalize_row(txn(TODAY, -1.0, "OK"), account_kind="account", account_currency="GBP").flags is None
    eur = normalize_row({**txn(TODAY, -1.0, "OK"), "currency": "EUR"}, account_kind="account", account_currency="GBP")
    assert eur.currency == "EUR" and eur.flags == "currency_mismatch"


def test_quarantine_key_ignores_the_unstable_transaction_id():
    a = txn(TODAY, -1.0, "X", npti=None)
    b = dict(a, transaction_id="another-request")
    assert quarantine_key("booked", a, json.dumps(a)) == quarantine_key("booked", b, json.dumps(b))
    assert quarantine_key("booked", a, "") != quarantine_key("pending", a, "")
    with_id = txn(TODAY, -1.0, "X", npti="txn-1")
    assert quarantine_key("booked", with_id, "") == quarantine_key("booked", dict(with_id, amount="12.3O"), "")
    assert quarantine_key("booked", [1], "[1]").startswith("booked:h:")


def _window(nul_desc="A\x00B"):
    rows = [txn(day, -1.0 - day.day, f"SHOP {day.day}") for day in DAYS]
    rows[3] = txn(DAYS[3], -40.0, nul_desc, merchant="M\x00X", npti="txn-hostile-3")
    return rows


def test_a_nul_byte_is_cleaned_and_the_whole_window_loads(engine):
    account = make_account(engine)
    client = FakeClient(booked=_window())
    _, normalized, _, load = run_pipeline(engine, client, account, DAYS, today=TODAY)
    assert (normalized.parsed, normalized.quarantined, normalized.cleaned) == (14, 0, 1)
    assert load.inserted == 14
    with engine.connect() as conn:
        row = conn.execute(sa.select(transactions).where(transactions.c.amount == -40)).one()
        payload = conn.execute(sa.select(raw_transactions.c.payload).where(raw_transactions.c.id == row.raw_transaction_id)).scalar_one()
        body = conn.execute(sa.select(raw_fetches.c.body).where(raw_fetches.c.kind == "booked")).scalar_one()
    assert (row.description, row.merchant_name, row.flags) == ("AB", "MX", "text_cleaned")
    # What the bank sent is kept verbatim: the JSON escape is in the body and the payload.
    assert json.loads(payload)["description"] == "A\x00B"
    assert "A\\u0000B" in body and json.loads(body)["results"][3]["merchant_name"] == "M\x00X"
    # A rerun (new fetch) adds nothing: the cleaned row dedups against itself.
    *_, load = run_pipeline(engine, client, account, DAYS, run_id="run-2", today=TODAY)
    assert load.inserted == 0 and count(engine, transactions) == 14


def test_an_unknown_currency_is_quarantined_and_a_foreign_one_flagged(engine):
    account = make_account(engine)
    rows = _window("PLAIN")
    rows[1] = dict(rows[1], currency="XYZ")
    rows[2] = dict(rows[2], currency="EUR")
    _, normalized, _, load = run_pipeline(engine, client := FakeClient(booked=rows), account, DAYS, today=TODAY)
    assert (normalized.quarantined, normalized.currency_mismatch, load.inserted) == (1, 1, 13)
    with engine.connect() as conn:
        reason = conn.execute(sa.select(quarantine.c.reason)).scalar_one()
        eur = conn.execute(sa.select(transactions.c.flags).where(transactions.c.currency == "EUR")).scalar_one()
    assert "currency: not an ISO 4217 currency code: 'XYZ'" in reason and eur == "currency_mismatch"
    assert client.calls


def test_one_quarantine_entry_per_bad_row_after_three_imports_then_healed(engine):
    account = make_account(engine)
    rows = _window("PLAIN")
    good = rows[5]
    rows[5] = dict(good, amount="12.3O")  # same stable id, unparseable amount
    no_id = dict(txn(DAYS[6], -9.0, "NO ID ROW", npti=None), transaction_type="SIDEWAYS")
    rows.append(no_id)
    client = FakeClient(booked=rows)
    for run in range(3):
        client.booked = [dict(r, transaction_id=f"{r['transaction_id']}-{run}") for r in rows]  # new ids per request
        _, normalized, _, load = run_pipeline(engine, client, account, DAYS, run_id=f"run-{run}", today=TODAY)
        assert load.inserted == (13 if run == 0 else 0)
        assert normalized.quarantined == (2 if run == 0 else 0)
    with engine.connect() as conn:
        entries = conn.execute(sa.select(quarantine).order_by(quarantine.c.id)).all()
    assert [e.seen_count for e in entries] == [3, 3] and count(engine, quarantine_sightings) == 6
    assert "amount: expected a number, got '12.3O'" in entries[0].reason
    assert quality.unexplained_quarantine(engine) == 2

    # The bank fixes the amount: the entry keyed by the stable id is resolved, the row loads.
    client.booked = [good if r is rows[5] else r for r in rows]
    _, normalized, _, load = run_pipeline(engine, client, account, DAYS, run_id="run-4", today=TODAY)
    assert (normalized.resolved, load.inserted) == (1, 1)
    with engine.connect() as conn:
        healed = conn.execute(sa.select(quarantine).where(quarantine.c.id == entries[0].id)).one()
    assert healed.resolved_at is not None and healed.resolution.startswith("healed")
    assert quality.unexplained_quarantine(engine) == 1  # the row without an id is still unexplained


def test_rows_with_odd_values_are_quarantined_and_the_rest_load(engine):
    account = make_account(engine)
    rows = _window("PLAIN")
    rows[2] = dict(rows[2], amount=10**400)  # out of range
    rows[4] = dict(rows[4], running_balance={"amount": [1], "currency": "GBP"})
    rows[6] = dict(rows[6], transaction_classification=["ok", {"x": 1}])
    # Dated in the window's text, but converting it to UTC overflows (this once escaped as an
    # OverflowError and failed the fetch step while landing the row).
    rows[8] = dict(rows[8], timestamp="9999-12-31T23:59:59-05:00")
    client = FakeClient(booked=rows)
    client.transactions = lambda kind, pid, start, end: client._response(rows)  # serve every row
    _, normalized, _, load = run_pipeline(engine, client, account, DAYS, today=TODAY)
    assert normalized.quarantined == 4 and load.inserted == 10
    with engine.connect() as conn:
        reasons = conn.execute(sa.select(quarantine.c.reason)).scalars().all()
    assert any("timestamp: out of range: '9999-12-31T23:59:59-05:00'" in r for r in reasons)
    assert quality.unexplained_quarantine(engine) == 4


def test_staged_rows_never_hold_characters_postgres_refuses(engine):
    account = make_account(engine)
    rows = _window("\ud83d\x00\x01 broken emoji")
    run_pipeline(engine, FakeClient(booked=rows), account, DAYS, today=TODAY)
    with engine.connect() as conn:
        descriptions = conn.execute(sa.select(staged_transactions.c.description)).scalars().all()
    assert "\ufffd broken emoji" in descriptions and count(engine, transactions) == 14


def test_a_failed_fetch_whose_message_quotes_a_nul_is_still_recorded(engine):
    from bank_pipeline.ingest import fetch_account_days
    from bank_pipeline.truelayer.errors import MalformedResponse

    account = make_account(engine)
    client = FakeClient()
    client.fail_with = MalformedResponse("TrueLayer GET /x returned a body that is not valid JSON (starts '\x00\x00{')")
    with pytest.raises(MalformedResponse):
        fetch_account_days(engine, client, account, DAYS, run_id="r1", today=TODAY)
    with engine.connect() as conn:
        error = conn.execute(sa.select(raw_fetches.c.error)).scalar_one()
    assert "not valid JSON (starts '{')" in error


REFUSED = "REFUSED BY THE DATABASE"


def _refuse_one_description(engine) -> None:
    """Make the database itself refuse staged rows with description REFUSED (a trigger on SQLite,
    a CHECK constraint on PostgreSQL): a row that passes every check of normalize_row and still
    cannot be written."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(
                sa.text(
                    "CREATE TRIGGER refuse_row BEFORE INSERT ON staged_transactions "
                    f"WHEN NEW.description = '{REFUSED}' BEGIN SELECT RAISE(ABORT, 'refuse_row'); END"
                )
            )
        else:
            conn.execute(
                sa.text(f"ALTER TABLE staged_transactions ADD CONSTRAINT refuse_row CHECK (description <> '{REFUSED}')")
            )


def test_a_row_the_database_refuses_is_quarantined_and_the_rest_load(engine):
    """The batch write fails, the rows are written one by one, the refused one is quarantined with
    the database's reason, and the step succeeds; a rerun sights it again without a second entry."""
    account = make_account(engine)
    _refuse_one_description(engine)
    client = FakeClient(booked=_window(REFUSED))
    _, normalized, _, load = run_pipeline(engine, client, account, DAYS, today=TODAY)
    assert (normalized.parsed, normalized.quarantined, load.inserted) == (13, 1, 13)
    with engine.connect() as conn:
        (entry,) = conn.execute(sa.select(quarantine)).all()
        staged = conn.execute(sa.select(sa.func.count()).select_from(staged_transactions)).scalar_one()
    assert "the database refused it" in entry.reason and "refuse_row" in entry.reason, entry.reason
    assert json.loads(entry.payload)["description"] == REFUSED and staged == 13
    assert quality.unexplained_quarantine(engine) == 1

    *_, load = run_pipeline(engine, client, account, DAYS, run_id="run-2", today=TODAY)
    with engine.connect() as conn:
        entries = conn.execute(sa.select(quarantine)).all()
    assert load.inserted == 0 and count(engine, transactions) == 13
    assert [e.seen_count for e in entries] == [2]
