"""The offline model beyond UK merchants: vocabulary, chains abroad, cleaning of merchant names.

The development examples (data/dev_international_examples.csv) were written for these tests from
general knowledge of card descriptors; the independent evaluation set is kept apart (bench only).
"""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import pytest

from bank_pipeline.categories import DEFAULT_CATEGORIES
from bank_pipeline.enrich.knowledge import VOCABULARY_PATH, load_knowledge_base
from bank_pipeline.enrich.normalise import merchant_words
from bank_pipeline.enrich.offline import OfflineModel
from bank_pipeline.enrich.payment import detect_payment_method
from bank_pipeline.enrich.types import TxnInput

DEV = Path(__file__).with_name("data") / "dev_international_examples.csv"


def _txn(description, amount="-10.00", merchant_name=None, tl_category="PURCHASE", classification=()):
    amount = Decimal(amount)
    return TxnInput(
        1,
        description,
        amount,
        "credit" if amount > 0 else "debit",
        merchant_name,
        tl_category,
        classification,
    )


def _norm(text):
    return "".join(c for c in (text or "").casefold() if c.isalnum())


def test_development_examples_abroad_and_online():
    model = OfflineModel()
    rows = list(csv.DictReader(DEV.open(encoding="utf-8")))
    wrong, names, names_right = [], 0, 0
    for row in rows:
        answer = model.classify(
            _txn(row["description"], row["amount"], tl_category=row["transaction_category"])
        )
        if answer.category != row["expected_category"]:
            wrong.append((row["description"], answer.category, row["expected_category"]))
        if row["expected_merchant"]:
            names += 1
            names_right += _norm(answer.merchant) == _norm(row["expected_merchant"])
    assert len(rows) >= 90
    assert len(wrong) <= len(rows) // 20, wrong
    assert names_right / names >= 0.9


def test_vocabulary_labels_exist_in_the_taxonomy():
    raw = json.loads(VOCABULARY_PATH.read_text(encoding="utf-8"))
    for m in raw["merchants"]:
        cat = DEFAULT_CATEGORIES[m["category"]]
        assert m["subcategory"] is None or m["subcategory"] in cat.subcategories, m
        if "credit" in m:
            assert "credit" in DEFAULT_CATEGORIES[m["credit"]["category"]].directions, m
    for key in ("keywords_before", "keywords_first", "keywords_specific", "keywords_generic"):
        for rule in raw[key]:
            cat = DEFAULT_CATEGORIES[rule["category"]]
            assert rule.get("subcategory") is None or rule["subcategory"] in cat.subcategories, rule
    for value in raw["classifications"].values():
        assert value[0] in DEFAULT_CATEGORIES


@pytest.mark.parametrize(
    "description,words",
    [
        ("WAL-MART #1234 WAL-MART SUPERCENTER PURCHASE HOUSTON TX", ["wal", "mart"]),
        ("SQ *BLUE BOTTLE COFFEE OAKLAND CA", ["blue", "bottle", "coffee"]),
        ("TST* JOES DINER 00123 SAN JOSE CA", ["joes", "diner"]),
        ("PAYPAL *NETFLIX.COM 4029357733 CA", ["netflix"]),
        ("DOORDASH*JOHNNYS BUR WWW.DOORDASH.", ["doordash", "johnnys", "bur"]),
        ("BOBS AUTO REPAIR DENVER CO", ["bobs", "auto", "repair"]),
        ("HOTEL DEL MAR BARCELONA ES", ["hotel", "del", "mar"]),
        ("PURCHASE AUTHORIZED ON 03/12 SHELL OIL 57444 HOUSTON TX S384071234 CARD 1234", ["shell", "oil"]),
    ],
)
def test_merchant_words_strip_processors_store_numbers_urls_and_region_tails(description, words):
    kb = load_knowledge_base()
    assert merchant_words(description, kb.processor_prefixes, kb.noise_words) == words


def test_unknown_payee_gets_a_clean_name_not_the_raw_descriptor():
    answer = OfflineModel().classify(_txn("SQ *HAPPY LEAF 0042 PORTLAND OR"))
    assert answer.merchant == "Happy Leaf"


def test_gas_on_a_card_is_fuel_and_by_direct_debit_is_energy():
    model = OfflineModel()
    card = model.classify(_txn("CORNER GAS 0231 TULSA OK"))
    bill = model.classify(_txn("DD NORTHERN GAS SUPPLY", tl_category="DIRECT_DEBIT"))
    assert (card.category, card.subcategory) == ("transport", "fuel")
    assert (bill.category, bill.subcategory) == ("utilities", "energy")


def test_supermarket_fuel_station_beats_the_supermarket():
    model = OfflineModel()
    assert model.classify(_txn("COSTCO GAS #0117 SAN DIEGO CA")).subcategory == "fuel"
    assert model.classify(_txn("COSTCO WHSE #0117 SAN DIEGO CA")).category == "groceries"


def test_processor_prefix_dd_star_is_a_card_payment_not_a_direct_debit():
    assert detect_payment_method("DD *DOORDASH CHIPOTLE", "PURCHASE") == "card"
    assert detect_payment_method("DD BRITISH GAS", "DIRECT_DEBIT") == "direct_debit"


def test_p2p_apps_by_direction_and_rental_income():
    model = OfflineModel()
    sent = model.classify(_txn("CASH APP*JANE DOE OAKLAND CA"))
    got = model.classify(_txn("ZELLE FROM JANE DOE", "75.00", tl_category="CREDIT"))
    rent = model.classify(_txn("RENT FROM TENANT A JONES", "1200.00", tl_category="CREDIT"))
    assert (sent.category, sent.subcategory) == ("transfers", "to_others")
    assert (got.category, got.subcategory) == ("transfers", "from_others")
    assert (rent.category, rent.subcategory) == ("income", "other_income")


def test_truelayer_merchant_name_and_classification_are_used_when_the_text_says_nothing():
    model = OfflineModel()
    by_name = model.classify(_txn("POS 4821 0913", merchant_name="Walgreens"))
    by_class = model.classify(_txn("XQ 88213 LTD", classification=("Auto & Transport", "Service & Parts")))
    assert by_name.category == "health" and by_name.merchant == "Walgreens"
    assert (by_class.category, by_class.subcategory, by_class.source) == ("transport", "car", "provider")


def test_unknown_only_when_nothing_fits():
    answer = OfflineModel().classify(_txn("XQZT 99812 KLMB"))
    assert answer.category == "unknown"
    assert answer.confidence == 0.0


def test_truelayer_merchant_name_words_place_an_unknown_payee():
    answer = OfflineModel().classify(_txn("CARD PAYMENT 0034", merchant_name="Luigis Pizzeria"))
    assert (answer.category, answer.merchant) == ("dining", "Luigis Pizzeria")


def test_the_independent_evaluation_set_is_large_mostly_abroad_and_valid_on_unseen_text():
    """The bench's independent set, less the rows whose description is also in a set the knowledge
    base was written or tuned with (the bench leaves those out): ≥ 300 rows, ≥ 40% not UK, labels
    in the taxonomy and allowed for the row's direction."""
    data = Path(__file__).with_name("data")
    tuned = set()
    for name in ("dev_international_examples.csv", "uk_descriptions_labelled.csv"):
        with (data / name).open(encoding="utf-8") as handle:
            tuned |= {_norm(r["description"]) for r in csv.DictReader(handle)}
    with (data / "eval_independent.csv").open(encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if _norm(r["description"]) not in tuned]
    assert len(rows) >= 300
    assert sum(r["region"] != "UK" for r in rows) / len(rows) >= 0.40
    for r in rows:
        cat = DEFAULT_CATEGORIES[r["category"]]
        assert r["direction"] in cat.directions, r
        assert r["direction"] == ("credit" if Decimal(r["amount"]) > 0 else "debit"), r
        assert not r["subcategory"] or r["subcategory"] in cat.subcategories, r
