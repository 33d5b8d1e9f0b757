"""Transfers between own accounts: against the simulator's ground truth on a year of `multi-5`
(precision 1.0, recall ≥ 0.95, the planted same-amount payments never paired), and in the ledger:
labels, the user's categories kept, `bank-pipeline transfers list|reject|link`, a rejected pair
staying rejected after a re-run, and the `transfers` asset in Dagster.

The year is generated once for the module and paired directly (no HTTP, no Dagster): the matcher
is a pure function of the legs, so this is cheap.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa

from bank_pipeline.analytics.transfers import (
    Leg,
    OwnAccount,
    match_transfers,
    update_transfers,
)
from bank_pipeline.cli import main
from bank_pipeline.db import make_engine, migrate
from bank_pipeline.db.schema import enrichments, transfer_rejections, transfers
from bank_pipeline.enrich import categorize, enrich_account_days
from bank_pipeline.enrich.offline import OfflineModel
from bank_pipeline.simulator.generator import generate_user
from bank_pipeline_tests.enrich_support import add_transactions
from bank_pipeline_tests.fixtures.clock import TODAY
from bank_pipeline_tests.ingest_support import make_account

# --- a year of multi-5, against the simulator's ground truth ------------------------------------

YEAR_LAST = TODAY - dt.timedelta(days=1)
YEAR_FIRST = YEAR_LAST - dt.timedelta(days=364)


@pytest.fixture(scope="module")
def year():
    """(legs, own accounts, true pairs, planted leg ids) of multi-5's booked year."""
    data = generate_user(42, "multi-5", YEAR_FIRST - dt.timedelta(days=40), TODAY + dt.timedelta(days=10))
    legs, own, by_pair, planted = [], [], defaultdict(list), set()
    for key, account in data.accounts.items():
        spec = account.spec
        own.append(OwnAccount(key, spec.iban, (spec.sort_code or "").replace("-", "") or None, spec.number))
        for t in account.booked(YEAR_FIRST.toordinal(), YEAR_LAST.toordinal(), TODAY.toordinal()):
            meta = t.meta or {}
            legs.append(Leg(
                t.uid, key, dt.date.fromordinal(t.booking_day), Decimal(t.amount) / 100, spec.currency,
                t.description, t.tl_category, meta.get("counter_party_iban"), meta.get("provider_reference"),
            ))
            if t.transfer_pair:
                by_pair[t.transfer_pair].append(t)
            if t.planted:
                planted.add(t.uid)
    # A pair whose other leg falls outside the year is not in it.
    true_pairs = {
        (min(p, key=lambda t: t.amount).uid, max(p, key=lambda t: t.amount).uid)
        for p in by_pair.values()
        if len(p) == 2
    }
    return legs, own, true_pairs, planted


def test_ground_truth_marks_both_legs_of_each_own_transfer(year):
    legs, _, true_pairs, planted = year
    by_id = {leg.id: leg for leg in legs}
    assert len(true_pairs) >= 40  # card repayments, monthly top-ups and ad-hoc moves
    for debit, credit in true_pairs:
        d, c = by_id[debit], by_id[credit]
        assert d.account_id != c.account_id and d.amount == -c.amount < 0
        assert 0 <= (c.day - d.day).days <= 3
    # Card repayments from the current account are among them.
    assert any(by_id[c].account_id == "acct3" for _, c in true_pairs)
    # The planted payments: the same £9.99 out of two accounts and into a third on one day.
    days = defaultdict(list)
    for leg_id in planted:
        days[by_id[leg_id].day].append(by_id[leg_id])
    assert len(days) == 12
    for same_day in days.values():
        assert sorted(leg.amount for leg in same_day) == [Decimal("-9.99"), Decimal("-9.99"), Decimal("9.99")]
        assert len({leg.account_id for leg in same_day}) == 3


def test_precision_is_1_and_recall_at_least_95_percent_on_a_year_of_multi_5(year):
    legs, own, true_pairs, planted = year
    found = {(p.debit, p.credit) for p in match_transfers(legs, own, window_days=3)}
    false = found - true_pairs
    assert not false, f"false transfers: {sorted(false)[:5]}"
    recall = len(found & true_pairs) / len(true_pairs)
    assert recall >= 0.95, f"recall {recall:.3f}: missed {sorted(true_pairs - found)[:5]}"
    assert not {i for pair in found for i in pair} & planted


def test_the_planted_trap_is_stopped_by_uniqueness_not_only_by_the_card_purchase_category(year):
    """A bank that sends no transaction category: the £9.99 refund then sits beside two eligible
    £9.99 debits in the window, and only the one-to-one rule keeps it unpaired."""
    legs, own, _, planted = year
    uncategorised = [dataclasses.replace(leg, transaction_category=None) if leg.id in planted else leg for leg in legs]
    refund = next(leg for leg in uncategorised if leg.id in planted and leg.amount > 0)
    debits = [leg for leg in uncategorised if leg.id in planted and leg.amount < 0 and leg.day == refund.day]
    assert len(debits) == 2
    assert not [p for p in match_transfers(uncategorised, own) if refund.id in (p.debit, p.credit)]
    # With one of the two debits gone, amount and date alone would pair the other with the refund.
    without_one = [leg for leg in uncategorised if leg.id != debits[0].id]
    paired = {(p.debit, p.credit) for p in match_transfers(without_one, own) if p.credit == refund.id}
    assert paired == {(debits[1].id, refund.id)}


def test_ambiguity_in_either_direction_pairs_nothing():
    day = dt.date(2026, 3, 2)
    own = [OwnAccount("a"), OwnAccount("b"), OwnAccount("c")]
    one_out_two_in = [Leg(1, "a", day, Decimal("-50"), "GBP"), Leg(2, "b", day, Decimal("50"), "GBP"),
                      Leg(3, "c", day + dt.timedelta(days=1), Decimal("50"), "GBP")]
    two_out_one_in = [Leg(1, "a", day, Decimal("-50"), "GBP"), Leg(2, "b", day, Decimal("-50"), "GBP"),
                      Leg(3, "c", day, Decimal("50"), "GBP")]
    assert match_transfers(one_out_two_in, own) == []
    assert match_transfers(two_out_one_in, own) == []
    # Outside the window, in the wrong order, another currency, the same account: no pair either.
    for credit in (Leg(2, "b", day + dt.timedelta(days=4), Decimal("50"), "GBP"),
                   Leg(2, "b", day - dt.timedelta(days=1), Decimal("50"), "GBP"),
                   Leg(2, "b", day, Decimal("50"), "EUR"),
                   Leg(2, "a", day, Decimal("50"), "GBP")):
        assert match_transfers([Leg(1, "a", day, Decimal("-50"), "GBP"), credit], own) == []
    assert [p.method for p in match_transfers(
        [Leg(1, "a", day, Decimal("-50"), "GBP"), Leg(2, "b", day + dt.timedelta(days=4), Decimal("50"), "GBP")],
        own, window_days=4)] == ["amount"]


def test_an_identifier_resolves_what_the_amount_cannot():
    day = dt.date(2026, 3, 2)
    own = [OwnAccount("a", "GB33MOCK04000412345678", "040004", "12345678"),
           OwnAccount("b", "GB94MOCK04000487654321", "040004", "87654321"), OwnAccount("c")]
    legs = [Leg(1, "a", day, Decimal("-50"), "GBP", "TFR TO 04-00-04 87654321"),
            Leg(2, "b", day, Decimal("50"), "GBP", "BANK TRANSFER IN"),
            Leg(3, "c", day, Decimal("50"), "GBP", "FROM J SMITH")]
    assert [(p.debit, p.credit, p.method) for p in match_transfers(legs, own)] == [(1, 2, "identifier")]
    by_iban = [Leg(1, "a", day, Decimal("-50"), "GBP", "MOBILE", counterparty_iban="GB94 MOCK 0400 0487 6543 21"),
               *legs[1:]]
    assert [(p.debit, p.credit) for p in match_transfers(by_iban, own)] == [(1, 2)]
    by_reference = [Leg(1, "a", day, Decimal("-50"), "GBP", reference="OWN123"),
                    Leg(2, "b", day, Decimal("50"), "GBP", reference="OWN123"), legs[2]]
    assert [p.method for p in match_transfers(by_reference, own)] == ["reference"]
    # A card purchase is never a leg, whatever its amount.
    shop = [Leg(1, "a", day, Decimal("-50"), "GBP", transaction_category="PURCHASE"), legs[1]]
    assert match_transfers(shop, own) == []
    # Nor, on amount and dates alone, a refund or income; an identifier still pairs them.
    refund = [Leg(1, "a", day, Decimal("-50"), "GBP"), Leg(2, "b", day, Decimal("50"), "GBP", category="refunds")]
    assert match_transfers(refund, own) == []
    named = [Leg(1, "a", day, Decimal("-50"), "GBP", "TO A/C 87654321"), refund[1]]
    assert [p.method for p in match_transfers(named, own)] == ["identifier"]
    # The same sum moved twice, three days apart, each named: the closest legs go together.
    later = day + dt.timedelta(days=3)
    twice = [Leg(1, "a", day, Decimal("-250"), "GBP", "TFR TO 04-00-04 87654321"),
             Leg(2, "b", day, Decimal("250"), "GBP", "FROM A/C 12345678"),
             Leg(3, "a", later, Decimal("-250"), "GBP", "TFR TO 04-00-04 87654321"),
             Leg(4, "b", later, Decimal("250"), "GBP", "FROM A/C 12345678")]
    assert sorted((p.debit, p.credit) for p in match_transfers(twice, own)) == [(1, 2), (3, 4)]


# --- the ledger and the command line -------------------------------------------------------------

DAY = dt.date(2026, 10, 6)


def _small_ledger(url: str):
    """A small ledger: an own transfer named by account number, a card repayment (amount only),
    the planted £9.99 trap, all enriched; returns (url, engine, ids by name)."""
    engine = make_engine(url)
    current = make_account(engine, identity="iban:GB33MOCK04000412345678", display_name="Current")
    savings = make_account(engine, identity="iban:GB94MOCK04000487654321", display_name="Saver")
    other = make_account(engine, identity="iban:GB12MOCK04000411112222", display_name="Joint")
    card = make_account(engine, kind="card", display_name="Card")
    ids = {}
    ids["to_savings"], ids["card_payment"], ids["sub_a"] = add_transactions(engine, current["id"], [
        (DAY, "TFR TO 04-00-04 87654321", "-200.00", None, "TRANSFER"),
        (DAY, "MOCK BANK CARD PAYMENT", "-312.47", None, "BILL_PAYMENT"),
        (DAY, "AUDIBLE UK ADBL.CO/PYMT", "-9.99", None, "DIRECT_DEBIT"),
    ])
    ids["from_current"], ids["sub_b"] = add_transactions(engine, savings["id"], [
        (DAY + dt.timedelta(days=1), "FROM A/C 12345678", "200.00", None, "TRANSFER"),
        (DAY, "NOW TV SUBSCRIPTION", "-9.99", None, "DIRECT_DEBIT"),
    ])
    (ids["refund"],) = add_transactions(engine, other["id"], [(DAY, "APPLE.COM/BILL REFUND", "9.99", None, "CREDIT")])
    (ids["card_received"],) = add_transactions(engine, card["id"], [
        (DAY + dt.timedelta(days=2), "PAYMENT RECEIVED - THANK YOU", "312.47", None, "CREDIT"),
    ])
    days = [DAY + dt.timedelta(days=i) for i in range(3)]
    enrich_account_days(engine, {a["id"]: days for a in (current, savings, other, card)}, OfflineModel(), run_id="t")
    return url, engine, ids


@pytest.fixture
def ledger(db_url):
    """The small ledger on SQLite and PostgreSQL."""
    url, engine, ids = _small_ledger(db_url)
    yield url, engine, ids
    engine.dispose()


@pytest.fixture(scope="module")
def unchanged_ledger(tmp_path_factory):
    """The small ledger on SQLite, shared by tests that change nothing in it."""
    url = f"sqlite:///{tmp_path_factory.mktemp('transfers') / 'app.db'}"
    migrate(make_engine(url))
    url, engine, ids = _small_ledger(url)
    yield url, engine, ids
    engine.dispose()


def _labels(engine) -> dict[int, tuple[str, str]]:
    with engine.connect() as conn:
        return {r.transaction_id: (r.category, r.source) for r in conn.execute(sa.select(enrichments))}


def _cli(url, monkeypatch, capsys, *argv) -> tuple[int, str, str]:
    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", url)
    try:
        code = main(["transfers", *map(str, argv)])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_pairs_are_labelled_the_users_category_stands_and_a_rejection_survives_reruns(ledger, monkeypatch, capsys):
    url, engine, ids = ledger
    before = _labels(engine)
    categorize(engine, ids["card_payment"], "debt_repayment", subcategory="credit_card", learn=False)

    stats = update_transfers(engine, run_id="run-1")
    assert (stats.new_pairs, stats.by_method) == (2, {"identifier": 1, "amount": 1})
    assert stats.kept_override == 1
    labels = _labels(engine)
    for leg in ("to_savings", "from_current", "card_received"):
        assert labels[ids[leg]] == ("transfers", "transfer")
    assert labels[ids["card_payment"]] == ("debt_repayment", "override")  # the user's word stands
    for leg in ("sub_a", "sub_b", "refund"):  # the planted trap is not a transfer
        assert labels[ids[leg]] == before[ids[leg]]

    code, out, _ = _cli(url, monkeypatch, capsys, "list")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 2 and "200.00 GBP" in lines[0] and "[identifier]" in lines[0]
    assert f"transactions {ids['card_payment']} → {ids['card_received']}" in lines[1]
    transfer_id = int(lines[0].split("\t")[0])

    code, out, _ = _cli(url, monkeypatch, capsys, "reject", transfer_id)
    assert code == 0 and "will not be paired again" in out
    assert "2 transaction(s) relabelled; 2 month(s) of spending recomputed" in out  # both legs, both accounts
    assert _labels(engine)[ids["to_savings"]] == before[ids["to_savings"]]  # the earlier label is back
    assert _labels(engine)[ids["from_current"]] == before[ids["from_current"]]

    for run in ("run-2", "run-3"):
        stats = update_transfers(engine, run_id=run)
        assert stats.new_pairs == 0 and stats.rejected == 1
    with engine.connect() as conn:
        pairs = conn.execute(sa.select(transfers.c.debit_transaction_id, transfers.c.credit_transaction_id)).all()
    assert [tuple(p) for p in pairs] == [(ids["card_payment"], ids["card_received"])]

    # The user's link wins over their earlier rejection, and a run never undoes it.
    code, out, _ = _cli(url, monkeypatch, capsys, "link", ids["from_current"], ids["to_savings"])
    assert code == 0 and "linked" in out and "2 transaction(s) relabelled" in out
    update_transfers(engine, run_id="run-4")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(transfer_rejections)).scalar_one() == 0
        methods = dict(conn.execute(sa.select(transfers.c.debit_transaction_id, transfers.c.method)).all())
    assert methods == {ids["to_savings"]: "user", ids["card_payment"]: "amount"}
    assert _labels(engine)[ids["to_savings"]] == ("transfers", "transfer")


@pytest.mark.parametrize(
    "argv, message",
    [
        (("reject", 999999), "error: no transfer with id 999999 (see `bank-pipeline transfers list`)"),
        (("link", "{to_savings}", "{card_payment}"), "are in the same account: not a transfer"),
        (("link", "{from_current}", "{card_received}"), "a transfer is money out of one account and into another"),
        (("link", "{to_savings}", 999999), "error: no transaction with id 999999"),
        (("match", "--window-days", "40"), "argument --window-days: '40' is not a number of days from 0 to 31"),
    ],
    ids=["unknown-pair", "same-account", "same-direction", "unknown-transaction", "window"],
)
def test_bad_requests_are_one_line_errors(unchanged_ledger, monkeypatch, capsys, argv, message):
    url, _, ids = unchanged_ledger
    code, out, err = _cli(url, monkeypatch, capsys, *(str(a).format(**ids) for a in argv))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err and message in err


def test_the_transfers_asset_runs_downstream_of_enrichment(sqlite_url, tmp_path):
    from bank_pipeline.definitions import defs
    from bank_pipeline.orchestration.analytics import transfers as transfers_asset
    from bank_pipeline.orchestration.assets import enriched_transactions
    from bank_pipeline.orchestration.resources import AppDatabase

    url, engine, ids = _small_ledger(sqlite_url)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        # Resolved while an instance is open: Dagster reads its definitions state from the current one.
        graph = defs.resolve_asset_graph()
        assert enriched_transactions.key in graph.get(transfers_asset.key).parent_keys
        result = dg.materialize(
            [transfers_asset], instance=instance, resources={"database": AppDatabase(url=url)},
            run_config={"ops": {"transfers": {"config": {"window_days": 1}}}},
        )
    assert result.success
    metadata = result.asset_materializations_for_node("transfers")[0].metadata
    # With a one-day window the card repayment (two days apart) is not paired.
    assert metadata["new_pairs"].value == 1 and metadata["new_by_identifier"].value == 1
    with engine.connect() as conn:
        pairs = conn.execute(sa.select(transfers.c.debit_transaction_id, transfers.c.credit_transaction_id)).all()
    assert [tuple(p) for p in pairs] == [(ids["to_savings"], ids["from_current"])]
    engine.dispose()
