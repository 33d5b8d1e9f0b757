"""Offline model, cache keys, payment methods, pricing and the CLI (no network)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from sqlalchemy import select

from bank_pipeline import cli
from bank_pipeline.categories import DEFAULT_CATEGORIES
from bank_pipeline.db import make_engine
from bank_pipeline.db.schema import enrichments
from bank_pipeline.enrich.knowledge import KB_PATH, load_knowledge_base
from bank_pipeline.enrich.normalise import cache_key, normalise_description
from bank_pipeline.enrich.offline import OfflineModel
from bank_pipeline.enrich.payment import detect_payment_method
from bank_pipeline.enrich.policy import enforce_direction
from bank_pipeline.enrich.pricing import PRICES_ENV, PriceTable, estimate_call_cost
from bank_pipeline.enrich.types import Enrichment, TxnInput
from bank_pipeline.errors import BankPipelineError
from bank_pipeline_tests.enrich_support import add_transactions, labelled_accuracy, make_account

# Measured when the set was labelled (see the bench section `enrichment`); a small margin below.
MIN_CATEGORY_ACCURACY = 0.95
MIN_MERCHANT_ACCURACY = 0.90


def test_offline_accuracy_on_hand_labelled_uk_descriptions():
    category, merchant, rows = labelled_accuracy()
    assert rows >= 150
    assert category >= MIN_CATEGORY_ACCURACY, f"category accuracy {category:.3f}"
    assert merchant >= MIN_MERCHANT_ACCURACY, f"merchant accuracy {merchant:.3f}"


def test_knowledge_base_is_large_and_consistent():
    kb = load_knowledge_base()
    assert len(kb) >= 300
    raw = json.loads(KB_PATH.read_text(encoding="utf-8"))
    for m in raw["merchants"]:
        cat = DEFAULT_CATEGORIES[m["category"]]
        assert m["subcategory"] is None or m["subcategory"] in cat.subcategories, m
    for rule in raw["keywords_first"] + raw["keywords_after"]:
        cat = DEFAULT_CATEGORIES[rule["category"]]
        assert rule.get("subcategory") is None or rule["subcategory"] in cat.subcategories, rule


@pytest.mark.parametrize(
    "a,b",
    [
        ("CARD PAYMENT TO TESCO STORES 3297 ON 12 MAR", "CARD PAYMENT TO TESCO STORES 4410 ON 02 APR"),
        ("TESCO STORES 4929********1234 12/03/2024", "TESCO STORES XXXX5678 2024-04-02"),
        ("AMAZON.CO.UK*2K4LP7Q45", "AMAZON.CO.UK*9ZZ1AB2C3"),
        ("DIRECT DEBIT TO BRITISH GAS REF 850412345", "direct debit to British Gas ref 850499999"),
        ("ATM CASH NOTEMAC APR01", "ATM CASH NOTEMAC MAR15"),
        (
            "CARD PAYMENT TO WM MORRISONS STORE,45.67 GBP, RATE 1.00/GBP ON 04-02-2024",
            "CARD PAYMENT TO WM MORRISONS STORE,3.10 GBP, RATE 1.00/GBP ON 17-05-2024",
        ),
        (
            "DIRECT DEBIT PAYMENT TO VODAFONE REF 7712345, MANDATE NO 0045",
            "DIRECT DEBIT PAYMENT TO VODAFONE REF 7799999, MANDATE NO 0046",
        ),
        ("UBER *TRIP 12:34", "Uber *Trip 08:05"),
    ],
)
def test_cache_key_strips_card_numbers_dates_and_references(a, b):
    assert cache_key(a, "debit") == cache_key(b, "debit") is not None


def test_cache_key_keeps_what_matters():
    assert cache_key("TESCO STORES 3297", "debit") == "debit:tesco stores"
    assert cache_key("TESCO STORES 3297", "credit") == "credit:tesco stores"
    assert cache_key("SO J SMITH RENT", "debit") != cache_key("SO J BLOGGS RENT", "debit")
    assert normalise_description("SAINSBURY'S S/MKTS ON 12 MAR CLP") == "sainsburys s mkts clp"
    assert normalise_description("M&S SIMPLY FOOD") == "m and s simply food"
    assert cache_key("12/03/2024 4929", "debit") is None


@pytest.mark.parametrize(
    "description,tl,expected",
    [
        ("DD OCTOPUS ENERGY", None, "direct_debit"),
        ("EDF ENERGY DD", "DIRECT_DEBIT", "direct_debit"),
        ("SO J SMITH RENT", None, "standing_order"),
        ("FPO J BLOGGS", None, "faster_payment"),
        ("FASTER PAYMENTS RECEIPT REF SALARY", None, "faster_payment"),
        ("BGC ACME LTD SALARY", None, "bank_credit"),
        ("CPT LLOYDS BANK 12MAR", None, "cash"),
        (")))TESCO EXPRESS 2412", None, "card"),
        ("TESCO STORES 3297", "PURCHASE", "card"),
        ("TFR TO SAVINGS", None, "transfer"),
        ("CHQ 100234", None, "cheque"),
        ("SOMETHING", None, "other"),
    ],
)
def test_payment_method(description, tl, expected):
    assert detect_payment_method(description, tl) == expected


def test_offline_model_examples():
    model = OfflineModel()

    def ask(description, amount, tl=None, merchant=None, classification=()):
        direction = "credit" if amount > 0 else "debit"
        return model.classify(
            TxnInput(1, description, Decimal(amount), direction, merchant, tl, classification)
        )

    e = ask("DEB TESCO PFS 5612 READING", -58)
    assert (e.category, e.subcategory, e.merchant, e.payment_method) == ("transport", "fuel", "Tesco", "card")
    assert ask("UBER *EATS PENDING", -21).category == "dining"
    assert ask("UBER *TRIP HELP.UBER.COM", -14).category == "transport"
    e = ask("JOHN LEWIS 0421 OXFORD ST", 65)  # money back from a shop is a refund, not spending
    assert (e.category, e.merchant) == ("refunds", "John Lewis") and not e.flags
    e = ask("SQ *THE LITTLE BAKERY", -6)
    assert (e.category, e.merchant) == ("dining", "The Little Bakery")
    e = ask("ZXQ HOLDINGS 8812", -20, "PURCHASE", classification=("Shopping", "Clothing"))
    assert (e.category, e.source) == ("shopping", "provider")
    assert ask("ZXQ HOLDINGS 8812", -20, "PURCHASE").category == "unknown"
    assert ask("FPI J SMITH DINNER", 25).category == "transfers"
    assert ask("ACME WIDGETS", -12, "PURCHASE", merchant="Sainsbury's").merchant == "Sainsbury's"
    assert model.name.startswith("offline-")


def test_direction_policy_coerces_and_flags():
    cats = DEFAULT_CATEGORIES
    e = enforce_direction(Enrichment("groceries", "supermarket", confidence=0.9), "credit", cats)
    assert (e.category, e.subcategory, e.flags) == ("refunds", "refund", ("direction_coerced:groceries",))
    assert e.confidence <= 0.5
    e = enforce_direction(Enrichment("income", "salary"), "debit", cats)
    assert e.category == "other" and "direction_coerced:income" in e.flags
    e = enforce_direction(Enrichment("made_up", "x"), "debit", cats)
    assert e.category == "unknown" and "unknown_category:made_up" in e.flags
    assert enforce_direction(Enrichment("groceries", "not_a_sub"), "debit", cats).subcategory is None


def test_pricing_defaults_snapshots_and_file_override(tmp_path, monkeypatch):
    table = PriceTable.from_env()
    # 1M in + 1M out + 1M cache write + 1M cache read at haiku 4.5 = 1 + 5 + 1.25 + 0.1
    assert table.cost("claude-haiku-4-5", 10**6, 10**6, 10**6, 10**6) == Decimal("7.35")
    assert table.get("claude-haiku-4-5-20251001") == table.get("claude-haiku-4-5")
    assert table.cost("unknown-model", 1000, 1000, 0, 0) == 0
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps({"claude-haiku-4-5": {"input": 2, "output": 10, "cache_read_multiplier": 0.5}})
    )
    monkeypatch.setenv(PRICES_ENV, str(prices))
    assert PriceTable.from_env().cost("claude-haiku-4-5", 10**6, 0, 0, 10**6) == Decimal("3")
    assert estimate_call_cost("claude-haiku-4-5", 40) > 0
    prices.write_text("{not json")
    with pytest.raises(BankPipelineError, match=PRICES_ENV):
        PriceTable.from_env()


def test_cli_enrich_and_categorize(sqlite_url, monkeypatch, capsys, tmp_path):
    from datetime import date

    monkeypatch.setenv("BANK_PIPELINE_HOME", str(tmp_path))
    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("BANK_PIPELINE_ENRICHER", "offline")
    engine = make_engine(sqlite_url)
    account = make_account(engine, key="a0123456789ab")
    day = date(2026, 3, 2)
    [tesco, mystery] = add_transactions(
        engine, account, [(day, "TESCO STORES 3297", -4), (day, "ZXQ HOLDINGS 88", -9)]
    )

    assert (
        cli.main(["enrich", "--from", "2026-03-01", "--to", "2026-03-31", "--account", "a0123456789ab"]) == 0
    )
    out = capsys.readouterr().out
    assert "2 enriched of 2" in out and "0 model call(s)" in out
    assert (
        cli.main(["categorize", str(mystery), "shopping", "--subcategory", "home", "--merchant", "ZXQ"]) == 0
    )
    out = capsys.readouterr().out
    assert "shopping/home (ZXQ)" in out and "learned rule" in out and "'zxq holdings'" in out
    assert cli.main(["enrich", "--from", "2026-03-01", "--to", "2026-03-31", "--force"]) == 0
    assert "1 enriched of 2 (cache 1)" in capsys.readouterr().out  # the override is left alone
    with engine.connect() as conn:
        rows = {r.transaction_id: r for r in conn.execute(select(enrichments))}
    assert rows[mystery].source == "override" and rows[tesco].category == "groceries"

    assert cli.main(["categorize", "424242", "shopping"]) == 2
    assert "no transaction with id 424242" in capsys.readouterr().err
    assert cli.main(["categorize", str(tesco), "food"]) == 2
    err = capsys.readouterr().err
    assert "unknown category 'food'; valid categories:" in err and "groceries" in err
    assert cli.main(["enrich", "--from", "2026-03-01", "--to", "2026-03-31", "--account", "nope"]) == 2
    assert "unknown account key(s): nope" in capsys.readouterr().err
