"""Recurring payments consistent with their own history, over a year of the simulator's multi-5
user with a three-month gap in the ledger and monthly card repayments: every pattern's next date
follows its last payment, "ended" only when that next date is overdue, no transfer between own
accounts (card repayments included) listed, payees named."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa

from bank_pipeline.analytics.recurring import list_recurring, store_mandates, update_recurring
from bank_pipeline.analytics.transfers import update_transfers
from bank_pipeline.db import make_engine, migrate
from bank_pipeline.db.schema import recurring_payments, transactions, transfers
from bank_pipeline.enrich import enrich_account_days
from bank_pipeline.enrich.offline import OfflineModel
from bank_pipeline.simulator import mandates as sim_mandates
from bank_pipeline.simulator.generator import generate_user
from bank_pipeline_tests.enrich_support import add_transactions
from bank_pipeline_tests.fixtures.clock import TODAY
from bank_pipeline_tests.ingest_support import make_account

LAST = TODAY - dt.timedelta(days=1)
FIRST = LAST - dt.timedelta(days=364)
GAP = (FIRST + dt.timedelta(days=150), FIRST + dt.timedelta(days=240))  # never imported


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    """(engine, {transaction id: simulator Txn}) of the year with its gap, enriched, transfers
    paired, recurring payments detected as the assets do."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('recurring') / 'app.db'}")
    migrate(engine)
    data = generate_user(42, "multi-5", FIRST - dt.timedelta(days=40), TODAY + dt.timedelta(days=10))
    truth, days = {}, {}
    for key, account in data.accounts.items():
        spec = account.spec
        identity = f"iban:{spec.iban}" if spec.iban else f"card:sim:{key}"
        row = make_account(engine, kind=spec.kind, identity=identity, display_name=spec.display_name)
        booked = [t for t in account.booked(FIRST.toordinal(), LAST.toordinal(), TODAY.toordinal())
                  if not GAP[0].toordinal() <= t.booking_day <= GAP[1].toordinal()]
        ids = add_transactions(engine, row["id"], [
            (dt.date.fromordinal(t.booking_day), t.description, Decimal(t.amount) / 100, t.merchant_name,
             t.tl_category) for t in booked
        ])
        truth.update(zip(ids, booked, strict=True))
        days[row["id"]] = sorted({dt.date.fromordinal(t.booking_day) for t in booked})
        if spec.kind == "account":
            store_mandates(engine, row["id"], sim_mandates.direct_debits(42, data, key, TODAY, "now", key),
                           sim_mandates.standing_orders(data, key, TODAY, "now", key))
    enrich_account_days(engine, days, OfflineModel(), run_id="year")
    update_transfers(engine)
    update_recurring(engine)
    yield engine, truth
    engine.dispose()


def test_the_ledger_has_the_gap_and_paired_card_repayments(ledger):
    engine, truth = ledger
    with engine.connect() as conn:
        booked = set(conn.execute(sa.select(transactions.c.booking_date).distinct()).scalars())
        legs = {i for pair in conn.execute(sa.select(transfers.c.debit_transaction_id,
                                                     transfers.c.credit_transaction_id)) for i in pair}
    assert not {d for d in booked if GAP[0] <= d <= GAP[1]} and min(booked) < GAP[0] < GAP[1] < max(booked)
    repayments = {i for i, t in truth.items() if t.transfer_pair and t.true_category == "debt_repayment"}
    assert len(repayments) >= 6 and repayments <= legs


def test_states_and_next_dates_follow_the_last_payment(ledger):
    engine, truth = ledger
    asof = max(t.booking_day for t in truth.values())
    listed = list_recurring(engine)
    assert len(listed) >= 5
    for p in listed:
        assert p.next_date > p.last_date, p
        tolerance = 2 if p.cadence == "weekly" else 3
        overdue = asof > (p.next_date + dt.timedelta(days=tolerance)).toordinal()
        assert (p.state == "ended") == overdue, p
    with engine.connect() as conn:
        stored = conn.execute(sa.select(recurring_payments.c.payee, recurring_payments.c.last_date,
                                        recurring_payments.c.transaction_ids)).all()
    for payee, last, ids in stored:
        assert max(truth[i].booking_day for i in ids) == last.toordinal(), payee
    # A direct debit the bank lists is never "ended" while its payments go on after the gap.
    for p in (p for p in listed if p.source == "direct_debit"):
        later = [t for t in truth.values() if p.payee.upper() in " ".join(t.description.upper().split())
                 and t.booking_day > p.next_date.toordinal()]
        assert not later or p.state != "ended", (p, later[:1])


def test_no_transfer_between_own_accounts_is_a_recurring_payment_and_payees_are_names(ledger):
    engine, truth = ledger
    with engine.connect() as conn:
        rows = conn.execute(sa.select(recurring_payments.c.payee, recurring_payments.c.transaction_ids)).all()
    for payee, ids in rows:
        assert not [i for i in ids if truth[i].transfer_pair], payee
        assert any(c.isalpha() for c in payee), payee
