"""The Anthropic model tier against the local fake of the Messages API (no database)."""

from __future__ import annotations

import dataclasses
import logging
import math
from decimal import Decimal

import pytest

from bank_pipeline.categories import load_categories
from bank_pipeline.config import Settings
from bank_pipeline.enrich import build_model
from bank_pipeline.enrich.anthropic_model import TOOL_NAME, AnthropicModel
from bank_pipeline.enrich.ledger import Ledger
from bank_pipeline.enrich.offline import OfflineModel
from bank_pipeline.enrich.types import TxnInput
from bank_pipeline.errors import BankPipelineError
from bank_pipeline_tests.fixtures.anthropic import FAKE_API_KEY


def _txns(n: int, start: int = 100) -> list[TxnInput]:
    return [TxnInput(start + i, f"SHOP {i} LONDON", Decimal("-1") - i, "debit") for i in range(n)]


def _echo(txn: dict, labels: list[str]) -> dict:
    """Answers that reveal which transaction they belong to (merchant = its description)."""
    return {"category": "shopping", "merchant": txn["description"], "confidence": 0.7}


def _ids_sent(request: dict) -> list[str]:
    import json

    text = request["messages"][0]["content"]
    return [t["id"] for t in json.loads(text[text.index("{") :])["transactions"]]


def test_request_is_structured_cached_and_configured(fake_anthropic, anthropic_model_factory):
    model = anthropic_model_factory(batch_size=30)
    model.enrich(_txns(3), ledger=Ledger(None, None))
    [request] = fake_anthropic.message_requests
    assert request["model"] == "claude-haiku-4-5"
    assert request["tool_choice"] == {"type": "tool", "name": TOOL_NAME}
    [tool] = request["tools"]
    assert tool["cache_control"] == {"type": "ephemeral"}
    assert request["system"][-1]["cache_control"] == {"type": "ephemeral"}
    item = tool["input_schema"]["properties"]["items"]["items"]
    assert item["properties"]["category"]["enum"] == [
        *[c for c in load_categories() if c != "unknown"],
        "unknown",
    ]
    assert "id" in item["required"] and "category" in item["required"]
    sent = fake_anthropic.headers[0]
    assert FAKE_API_KEY in (sent.get("x-api-key") or sent.get("authorization", ""))
    assert FAKE_API_KEY not in repr(model)


@pytest.mark.parametrize("n,batch", [(1, 25), (25, 25), (26, 25), (101, 40)])
def test_one_call_per_batch(fake_anthropic, anthropic_model_factory, n, batch):
    results = anthropic_model_factory(batch_size=batch).enrich(_txns(n), ledger=Ledger(None, None))
    assert len(results) == n and fake_anthropic.responses == math.ceil(n / batch)


def test_out_of_order_answers_are_matched_by_id(fake_anthropic, anthropic_model_factory):
    fake_anthropic.answer = _echo
    fake_anthropic.script("reverse")
    txns = _txns(10)
    results = anthropic_model_factory().enrich(txns, ledger=Ledger(None, None))
    assert {t.id: results[t.id].merchant for t in txns} == {t.id: t.description for t in txns}
    assert fake_anthropic.responses == 1


def test_missing_extra_invalid_and_duplicate_items(fake_anthropic, anthropic_model_factory, caplog):
    fake_anthropic.answer = _echo
    txns = _txns(20)
    # batch 1 (10): drops 2; batch 2 (10): an unknown id, an invalid category, a conflicting duplicate.
    fake_anthropic.script(("drop", 2), "extra")
    model = anthropic_model_factory(batch_size=10)
    ledger = Ledger(None, None)
    with caplog.at_level(logging.WARNING):
        results = model.enrich(txns, ledger=ledger)
    assert sorted(results) == [t.id for t in txns]
    assert {t.id: results[t.id].merchant for t in txns} == {t.id: t.description for t in txns}
    assert "999999999" not in {str(k) for k in results}
    requests = fake_anthropic.message_requests
    assert len(requests) == 3 and _ids_sent(requests[2]) == ["100", "101"]  # retried once, smaller batch
    assert "1 unknown id(s)" in caplog.text and "2 id(s) without a valid answer" in caplog.text

    fake_anthropic.reset()
    fake_anthropic.script("invalid_category", "duplicate_conflict")
    results = model.enrich(_txns(10, start=500), ledger=ledger)
    assert results[500].category == "shopping" and results[500].merchant == "SHOP 0 LONDON"
    assert len(fake_anthropic.message_requests) == 2 and _ids_sent(fake_anthropic.message_requests[1]) == [
        "500"
    ]
    assert all(r.provider == "anthropic" for r in results.values())


def test_conflicting_duplicate_keeps_the_first_answer(fake_anthropic, anthropic_model_factory, caplog):
    fake_anthropic.answer = _echo
    fake_anthropic.script("duplicate_conflict")
    with caplog.at_level(logging.WARNING):
        results = anthropic_model_factory().enrich(_txns(3), ledger=Ledger(None, None))
    assert results[100].category == "shopping" and fake_anthropic.responses == 1
    assert "1 duplicate id(s)" in caplog.text


@pytest.mark.parametrize("status", [429, 529, 500])
def test_transient_errors_are_retried_and_counted(fake_anthropic, anthropic_model_factory, status):
    fake_anthropic.fail_next(2, status)
    ledger = Ledger(None, None)
    results = anthropic_model_factory().enrich(_txns(5), ledger=ledger)
    assert len(results) == 5 and all(r.provider == "anthropic" for r in results.values())
    assert len(fake_anthropic.requests) == 3 and ledger.totals.attempts == 3 and ledger.totals.calls == 1


def test_exhausted_retries_fall_back_to_offline_and_record_the_error(fake_anthropic, anthropic_model_factory):
    fake_anthropic.fail_next(3, 529)
    txns = [
        TxnInput(1, "TESCO STORES 3297", Decimal("-4"), "debit"),
        TxnInput(2, "ACME SALARY", Decimal("900"), "credit"),
    ]
    ledger = Ledger(None, None)
    results = anthropic_model_factory(max_attempts=3).enrich(txns, ledger=ledger)
    assert {r.provider for r in results.values()} == {"offline"}
    assert results[1].category == "groceries" and results[2].category == "income"
    assert all("fallback:anthropic" in r.flags for r in results.values())
    assert ledger.totals.calls == 1 and ledger.totals.attempts == 3 and len(fake_anthropic.requests) == 3


def test_no_tool_block_means_every_id_is_retried(fake_anthropic, anthropic_model_factory):
    fake_anthropic.script("no_tool")
    results = anthropic_model_factory(batch_size=4).enrich(_txns(4), ledger=Ledger(None, None))
    assert len(results) == 4 and all(r.provider == "anthropic" for r in results.values())
    assert [len(_ids_sent(r)) for r in fake_anthropic.message_requests] == [4, 2, 2]


def test_rejected_credentials_stop_with_a_clear_error_without_the_key(
    fake_anthropic, anthropic_model_factory
):
    fake_anthropic.fail_next(1, 401)
    with pytest.raises(BankPipelineError, match="check ANTHROPIC_API_KEY") as info:
        anthropic_model_factory().enrich(_txns(2), ledger=Ledger(None, None))
    assert FAKE_API_KEY not in str(info.value) and len(fake_anthropic.requests) == 1


def test_credits_are_coerced_whatever_the_model_says(fake_anthropic, anthropic_model_factory):
    fake_anthropic.answer = lambda txn, labels: {"category": "dining", "confidence": 0.9}
    results = anthropic_model_factory().enrich(
        [
            TxnInput(1, "PIZZA PLACE", Decimal("8"), "credit"),
            TxnInput(2, "PIZZA PLACE", Decimal("-8"), "debit"),
        ],
        ledger=Ledger(None, None),
    )
    assert results[1].category == "refunds" and "direction_coerced:dining" in results[1].flags
    assert results[2].category == "dining" and not results[2].flags


def test_build_model_from_settings(fake_anthropic, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    base = Settings.from_env()
    assert isinstance(build_model(base), OfflineModel)
    configured = dataclasses.replace(
        base,
        enricher="anthropic",
        anthropic_api_key=FAKE_API_KEY,
        anthropic_base_url=fake_anthropic.base_url,
        anthropic_model="claude-sonnet-4-5",
        enrich_batch_size=30,
    )
    model = build_model(configured)
    assert isinstance(model, AnthropicModel) and model.batch_size == 30
    model.enrich(_txns(1), ledger=Ledger(None, None))
    assert fake_anthropic.message_requests[0]["model"] == "claude-sonnet-4-5"
    with pytest.raises(BankPipelineError, match="ANTHROPIC_API_KEY is not set"):
        build_model(dataclasses.replace(configured, anthropic_api_key=None))
    with pytest.raises(BankPipelineError, match="must be 'offline' or 'anthropic'"):
        build_model(dataclasses.replace(base, enricher="gpt"))


def test_calls_are_split_evenly():
    from bank_pipeline.enrich.anthropic_model import split_evenly

    assert [len(p) for p in split_evenly(list(range(51)), 50)] == [26, 25]
    assert [len(p) for p in split_evenly(list(range(100)), 50)] == [50, 50]
    assert [len(p) for p in split_evenly(list(range(7)), 50)] == [7]
    assert split_evenly([], 50) == []
    assert [x for p in split_evenly(list(range(123)), 40) for x in p] == list(range(123))


def test_a_full_call_of_long_descriptions_fits_its_max_tokens(fake_anthropic, anthropic_model_factory):
    # Answers that echo a 120-character description as the merchant: longer than real ones.
    fake_anthropic.answer = lambda txn, labels: {
        "category": "shopping",
        "subcategory": "general",
        "merchant": txn["description"],
        "merchant_type": "general_merchandise_retailer",
        "essential": False,
        "payment_method": "card",
        "confidence": 0.87,
    }
    txns = [TxnInput(1000 + i, f"CARD PAYMENT TO {'LONG MERCHANT NAME ' * 5} {i:05d}", Decimal("-3"), "debit")
            for i in range(50)]  # fmt: skip
    ledger = Ledger(None, None)
    results = anthropic_model_factory(batch_size=50).enrich(txns, ledger=ledger)
    assert fake_anthropic.responses == 1 and ledger.totals.calls == 1
    assert all(results[t.id].provider == "anthropic" for t in txns)
    assert ledger.totals.output_tokens < fake_anthropic.message_requests[0]["max_tokens"]


def test_a_response_cut_at_max_tokens_is_asked_again(
    fake_anthropic, anthropic_model_factory, monkeypatch, caplog
):
    from bank_pipeline.enrich import anthropic_model

    monkeypatch.setattr(anthropic_model, "OUTPUT_TOKENS_PER_ANSWER", 10)  # too small: answers are cut
    with caplog.at_level(logging.WARNING):
        results = anthropic_model_factory(batch_size=20).enrich(_txns(20), ledger=Ledger(None, None))
    assert len(results) == 20 and "response truncated (max_tokens)" in caplog.text
    assert all(r.provider == "anthropic" for r in results.values())
    assert len(fake_anthropic.message_requests) > 1  # the cut-off ids were asked again


def test_batch_size_must_fit_the_output_limit(fake_anthropic):
    from bank_pipeline.enrich.anthropic_model import MAX_BATCH_SIZE

    for bad in (0, MAX_BATCH_SIZE + 1):
        with pytest.raises(BankPipelineError, match="BANK_PIPELINE_ENRICH_BATCH_SIZE must be 1 to"):
            AnthropicModel(api_key=FAKE_API_KEY, model="claude-haiku-4-5", base_url=fake_anthropic.base_url,
                           batch_size=bad)  # fmt: skip
