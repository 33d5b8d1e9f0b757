"""The user's learned classifier: it generalises corrections, and never outranks an override or a rule."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bank_pipeline.categories import DEFAULT_CATEGORIES
from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import category_rules, enrichments
from bank_pipeline.enrich import categorize, enrich_account_days
from bank_pipeline.enrich.classifier import UserClassifier, train_for, training_examples
from bank_pipeline.enrich.offline import OfflineModel
from bank_pipeline.enrich.types import TxnInput
from bank_pipeline_tests.enrich_support import add_transactions, make_account
from bank_pipeline_tests.fixtures.clock import TODAY

D0 = TODAY - timedelta(days=40)
KNOWN = [
    "TESCO STORES 3297",
    "SAINSBURYS S/MKTS",
    "PRET A MANGER",
    "COSTA COFFEE",
    "SHELL KINGSTON",
    "TFL TRAVEL CHARGE",
    "NETFLIX.COM",
    "SPOTIFY UK",
    "BOOTS 1123",
    "AMAZON.CO.UK*AB12CD",
    "GREGGS PLC",
    "ASDA STORES",
    "WAITROSE 123",
    "UBER TRIP",
    "PUREGYM MONTHLY",
    "ODEON CINEMAS",
    "ARGOS LTD",
    "NANDOS",
    "DELIVEROO",
    "PREMIER INN",
]


def _rows(engine) -> dict[int, dict]:
    with engine.connect() as conn:
        return {r["transaction_id"]: dict(r) for r in conn.execute(select(enrichments)).mappings()}


def _history(engine):
    """A month of ordinary spending, plus a payee the user corrects twice."""
    account = make_account(engine)
    rows = [(D0 + timedelta(days=i % 20), f"CARD PAYMENT TO {d}", -5 - i) for i, d in enumerate(KNOWN)]
    rows += [
        (D0, "CARD PAYMENT TO QZX KRELLWORKS HARBOUR", -12),
        (D0, "CARD PAYMENT TO QZX KRELLWORKS MILLS", -9),
    ]
    ids = add_transactions(engine, account, rows)
    days = [D0 + timedelta(days=i) for i in range(21)]
    enrich_account_days(engine, {account: days}, OfflineModel(), run_id="history")
    for txn_id in ids[-2:]:
        categorize(engine, txn_id, "pets", subcategory="pet_supplies")
    return account


def test_a_correction_generalises_to_a_similar_new_description(engine):
    account = _history(engine)
    (new,) = add_transactions(engine, account, [(TODAY, "CARD PAYMENT TO QZX KRELLWORKS DEPOT", -20)])
    before = OfflineModel().classify(TxnInput(new, "CARD PAYMENT TO QZX KRELLWORKS DEPOT", -20, "debit"))
    assert before.category != "pets"  # the offline model alone gets it wrong
    stats = enrich_account_days(engine, {account: [TODAY]}, OfflineModel(), run_id="next")
    row = _rows(engine)[new]
    assert (row["category"], row["subcategory"], row["source"]) == ("pets", "pet_supplies", "classifier")
    assert 0.6 <= row["confidence"] <= 1.0 and row["provider"] == "local"
    assert stats.by_source["classifier"] == 1


def test_the_classifier_leaves_what_it_was_not_taught_to_the_other_tiers(engine):
    account = _history(engine)
    (tesco,) = add_transactions(engine, account, [(TODAY, "CARD PAYMENT TO TESCO EXPRESS 99", -3)])
    enrich_account_days(engine, {account: [TODAY]}, OfflineModel(), run_id="next")
    assert _rows(engine)[tesco]["category"] == "groceries"


def test_the_classifier_never_outranks_a_rule_or_an_override(engine):
    account = _history(engine)
    with engine.begin() as conn:
        conn.execute(
            category_rules.insert().values(
                match_type="contains",
                pattern="qzx krellworks online",
                direction="debit",
                category="gifts",
                subcategory="gifts",
                priority=10,
                created_at=utcnow(),
            )
        )
    by_rule, overridden = add_transactions(
        engine,
        account,
        [
            (TODAY, "CARD PAYMENT TO QZX KRELLWORKS ONLINE", -20),
            (TODAY, "CARD PAYMENT TO QZX KRELLWORKS BATH", -8),
        ],
    )
    rule_txn = TxnInput(by_rule, "CARD PAYMENT TO QZX KRELLWORKS ONLINE", -20, "debit")
    override_txn = TxnInput(overridden, "CARD PAYMENT TO QZX KRELLWORKS BATH", -8, "debit")
    guesses = train_for(engine, DEFAULT_CATEGORIES).predict_many([rule_txn, override_txn])
    assert [g.category for g in guesses.values()] == ["pets", "pets"]  # what the classifier would say
    enrich_account_days(engine, {account: [TODAY]}, OfflineModel(), run_id="first")
    assert (_rows(engine)[by_rule]["category"], _rows(engine)[by_rule]["source"]) == ("gifts", "rule")
    categorize(engine, overridden, "gifts", learn=False)
    enrich_account_days(engine, {account: [TODAY]}, OfflineModel(), run_id="next", force=True)
    rows = _rows(engine)
    assert (rows[by_rule]["category"], rows[by_rule]["source"]) == ("gifts", "rule")
    assert (rows[overridden]["category"], rows[overridden]["source"]) == ("gifts", "override")


def test_training_is_deterministic(engine):
    _history(engine)
    examples = training_examples(engine)
    txn = TxnInput(1, "CARD PAYMENT TO QZX KRELLWORKS ONLINE", -20, "debit")
    first = UserClassifier(examples, DEFAULT_CATEGORIES, "a").predict(txn)
    second = UserClassifier(examples, DEFAULT_CATEGORIES, "a").predict(txn)
    assert first == second and first is not None


def test_no_corrections_no_classifier(engine):
    account = make_account(engine)
    rows = [(D0 + timedelta(days=i % 20), f"CARD PAYMENT TO {d}", -5 - i) for i, d in enumerate(KNOWN)]
    add_transactions(engine, account, rows)
    enrich_account_days(
        engine, {account: [D0 + timedelta(days=i) for i in range(21)]}, OfflineModel(), run_id="h"
    )
    assert train_for(engine, DEFAULT_CATEGORIES) is None
