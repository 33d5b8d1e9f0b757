"""The enrichment run against a real database (SQLite and PostgreSQL) and the fake Messages API."""

from __future__ import annotations

import math
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from bank_pipeline.db.schema import (
    category_overrides,
    category_rules,
    enrichment_cache,
    enrichments,
    llm_calls,
)
from bank_pipeline.enrich import categorize, enrich_account_days
from bank_pipeline.enrich.offline import OfflineModel
from bank_pipeline.errors import BankPipelineError
from bank_pipeline_tests.enrich_support import add_transactions, make_account

D0 = date(2026, 3, 1)


def _enrichment_rows(engine) -> dict[int, dict]:
    with engine.connect() as conn:
        return {r["transaction_id"]: dict(r) for r in conn.execute(select(enrichments)).mappings()}


def _two_accounts_of_spending(engine, n: int) -> dict[int, list[date]]:
    """n distinct merchants spread over two accounts and several days (partitions)."""
    a, b = make_account(engine), make_account(engine)
    rows_a = [
        (
            D0 + timedelta(days=i % 5),
            f"CARD PAYMENT TO SHOP NUMBER {chr(65 + i % 26)}{chr(65 + i // 26)} LTD",
            -5 - i,
        )
        for i in range(0, n, 2)
    ]
    rows_b = [
        (D0 + timedelta(days=i % 7), f"VIS MERCHANT {chr(65 + i % 26)}{chr(65 + i // 26)} GB", -3 - i)
        for i in range(1, n, 2)
    ]
    add_transactions(engine, a, rows_a)
    add_transactions(engine, b, rows_b)
    days = [D0 + timedelta(days=i) for i in range(7)]
    return {a: days, b: days}


def test_batches_span_partitions_then_cache_answers_everything(
    engine, fake_anthropic, anthropic_model_factory
):
    n, batch = 60, 25
    account_days = _two_accounts_of_spending(engine, n)
    model = anthropic_model_factory(batch_size=batch)

    stats = enrich_account_days(engine, account_days, model, run_id="run-1")

    assert fake_anthropic.responses == math.ceil(n / batch) == stats.model_calls
    sizes = [len(r["messages"][0]["content"].split('"id"')) - 1 for r in fake_anthropic.message_requests]
    assert sizes == [20, 20, 20]  # the fewest calls of at most 25, evenly split (not 25 + 25 + 10)
    assert stats.enriched == n and stats.by_source["model"] == n
    rows = _enrichment_rows(engine)
    assert len(rows) == n and {r["provider"] for r in rows.values()} == {"anthropic"}
    meta = stats.as_metadata()
    assert meta["source_model"] == n and meta["model_calls"] == 3 and meta["cost_usd"] > 0

    # Same merchants again on later days, with different card numbers/dates/refs: zero model calls.
    account_id = next(iter(account_days))
    later = D0 + timedelta(days=30)
    add_transactions(
        engine,
        account_id,
        [
            (later, "CARD PAYMENT TO SHOP NUMBER AA LTD 4929********1234 ON 31 MAR", -7),
            (later, "CARD PAYMENT TO SHOP NUMBER CA LTD REF 88123", -9),
        ],
    )
    fake_anthropic.reset()
    again = enrich_account_days(engine, {account_id: [later]}, model, run_id="run-2")
    assert fake_anthropic.responses == 0 and again.model_calls == 0
    assert again.by_source["cache"] == 2
    # force=True over everything: still no model call (the cache answers), every row rewritten.
    forced = enrich_account_days(engine, account_days, model, run_id="run-3", force=True)
    assert fake_anthropic.responses == 0 and forced.by_source["cache"] == n
    with engine.connect() as conn:
        hits = conn.execute(select(func.sum(enrichment_cache.c.hit_count))).scalar()
    assert hits == n + 2


def test_repeated_descriptions_in_one_run_are_asked_once(engine, fake_anthropic, anthropic_model_factory):
    account = make_account(engine)
    add_transactions(
        engine,
        account,
        [(D0 + timedelta(days=i), f"TFL TRAVEL CH {1000 + i} ON {i + 1:02d} MAR", -2.8) for i in range(30)],
    )
    stats = enrich_account_days(
        engine, {account: [D0 + timedelta(days=i) for i in range(30)]}, anthropic_model_factory(), run_id="r"
    )
    assert stats.model_calls == 1 and stats.by_source == {"model": 1, "cache": 29}
    assert "TFL TRAVEL CH" in fake_anthropic.message_requests[0]["messages"][0]["content"]


def test_ledger_totals_equal_the_usage_the_api_reported(engine, fake_anthropic, anthropic_model_factory):
    account_days = _two_accounts_of_spending(engine, 50)
    fake_anthropic.fail_next(2, 429)
    fake_anthropic.script("reverse", ("drop", 2))
    stats = enrich_account_days(engine, account_days, anthropic_model_factory(batch_size=25), run_id="run-L")

    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(llm_calls)).mappings()]
    reported = fake_anthropic.usage_totals
    assert sum(r["input_tokens"] for r in rows) == reported["input_tokens"] == stats.input_tokens
    assert sum(r["output_tokens"] for r in rows) == reported["output_tokens"] == stats.output_tokens
    assert sum(r["cache_read_input_tokens"] for r in rows) == reported["cache_read_input_tokens"]
    assert sum(r["cache_creation_input_tokens"] for r in rows) == reported["cache_creation_input_tokens"]
    assert reported["cache_read_input_tokens"] > 0 and reported["cache_creation_input_tokens"] > 0
    # 2 batches + 1 retry batch for the 2 dropped ids; the first call took 3 attempts.
    assert len(rows) == 3 and [r["attempts"] for r in rows] == [3, 1, 1]
    assert sum(r["attempts"] for r in rows) == len(fake_anthropic.requests) == stats.model_attempts
    assert [r["outcome"] for r in rows] == ["ok", "partial", "ok"] and {r["run_id"] for r in rows} == {
        "run-L"
    }
    assert [r["batch_size"] for r in rows] == [25, 25, 2]
    assert sum(float(r["cost_usd"]) for r in rows) == pytest.approx(float(stats.cost_usd), abs=1e-7)
    assert all(r["latency_ms"] is not None for r in rows)


@pytest.mark.parametrize("use_anthropic", [False, True], ids=["offline", "anthropic"])
def test_override_survives_reenrichment_and_teaches_a_rule(engine, anthropic_model_factory, use_anthropic):
    model = anthropic_model_factory() if use_anthropic else OfflineModel()
    account = make_account(engine)
    [gym, other] = add_transactions(
        engine, account, [(D0, "DD KINGS ROAD BOXING CLUB 0042", -40), (D0, "TESCO STORES 3297", -12)]
    )
    enrich_account_days(engine, {account: [D0]}, model, run_id="first")

    result = categorize(engine, gym, "fitness", subcategory="gym", merchant="Kings Road Boxing")
    assert result.rule_pattern == "dd kings road boxing club" and result.rule_id is not None
    for force in (False, True):
        enrich_account_days(engine, {account: [D0]}, model, run_id=f"again-{force}", force=force)
        row = _enrichment_rows(engine)[gym]
        assert (row["category"], row["subcategory"], row["source"], row["merchant"]) == (
            "fitness",
            "gym",
            "override",
            "Kings Road Boxing",
        )
    # Next month's payment to the same club is labelled by the learned rule, with no model involved.
    [nxt] = add_transactions(
        engine, account, [(D0 + timedelta(days=31), "DD KINGS ROAD BOXING CLUB 0043", -40)]
    )
    stats = enrich_account_days(engine, {account: [D0 + timedelta(days=31)]}, model, run_id="next")
    row = _enrichment_rows(engine)[nxt]
    assert (row["category"], row["source"], row["payment_method"]) == ("fitness", "rule", "direct_debit")
    assert stats.by_source == {"rule": 1} and stats.model_calls == 0
    # Even if someone wipes the enrichment row, the next run restores the override, not a model answer.
    with engine.begin() as conn:
        conn.execute(enrichments.delete().where(enrichments.c.transaction_id == gym))
    enrich_account_days(engine, {account: [D0]}, model, run_id="restore")
    assert _enrichment_rows(engine)[gym]["source"] == "override"
    assert _enrichment_rows(engine)[other]["source"] in ("model", "cache")


def test_income_is_never_labelled_as_spending_in_any_tier(engine, fake_anthropic, anthropic_model_factory):
    fake_anthropic.answer = lambda txn, labels: {
        "category": "groceries",
        "confidence": 0.9,
    }  # a careless model
    account = make_account(engine)
    ids = add_transactions(
        engine,
        account,
        [
            (D0, "ACME LTD PAYMENT 0001", 2500),
            (D0, "SHOP WITH MONEY BACK", 12.5),
            (D0, "SHOP WITH MONEY BACK", -12.5),
        ],
    )
    with engine.begin() as conn:  # a hand-written rule with no direction, aimed at spending
        conn.execute(
            category_rules.insert().values(
                match_type="contains", pattern="acme", category="shopping", created_at=D0
            )
        )
    enrich_account_days(engine, {account: [D0]}, anthropic_model_factory(), run_id="r")
    rows = _enrichment_rows(engine)
    credit_ok = {"income", "refunds", "transfers", "cash", "other", "unknown"}
    assert rows[ids[0]]["category"] in credit_ok and rows[ids[0]]["source"] == "rule"
    assert rows[ids[1]]["category"] in credit_ok and rows[ids[1]]["source"] == "model"
    assert rows[ids[2]]["category"] == "groceries"
    assert "direction_coerced:groceries" in rows[ids[1]]["flags"]
    assert "direction_coerced:shopping" in rows[ids[0]]["flags"]
    # The cache hands back the coerced answer for the next credit, never the spending label.
    with engine.connect() as conn:
        cached = dict(conn.execute(select(enrichment_cache.c.cache_key, enrichment_cache.c.category)).all())
    assert (
        cached["credit:shop with money back"] in credit_ok
        and cached["debit:shop with money back"] == "groceries"
    )


def test_missing_answers_fall_back_to_offline_honestly(
    engine, fake_anthropic, anthropic_model_factory, caplog
):
    account = make_account(engine)
    add_transactions(
        engine,
        account,
        [(D0, "TESCO STORES 3297", -4), (D0, "PRET A MANGER LONDON", -5), (D0, "NETFLIX.COM", -11)],
    )
    fake_anthropic.script(("drop", 2), ("drop", 2))  # first answer and the retry both leave the same ids out
    stats = enrich_account_days(engine, {account: [D0]}, anthropic_model_factory(), run_id="fb")
    rows = _enrichment_rows(engine)
    assert len(rows) == 3 and stats.fallbacks == 2
    fallbacks = [r for r in rows.values() if r["provider"] == "offline"]
    assert len(fallbacks) == 2 and all("fallback:anthropic" in r["flags"] for r in fallbacks)
    assert {r["category"] for r in fallbacks} == {"groceries", "dining"}  # offline knows them
    assert "using the offline model" in caplog.text


def test_categorize_rejects_bad_input_precisely(engine):
    account = make_account(engine)
    [debit, credit] = add_transactions(engine, account, [(D0, "TESCO STORES", -4), (D0, "ACME SALARY", 2000)])
    with pytest.raises(BankPipelineError, match=r"no transaction with id 999999"):
        categorize(engine, 999999, "groceries")
    with pytest.raises(BankPipelineError, match=r"unknown category 'grocery'; valid categories: .*groceries"):
        categorize(engine, debit, "grocery")
    with pytest.raises(
        BankPipelineError,
        match=r"unknown subcategory 'fish' for 'groceries'; valid subcategories: supermarket",
    ):
        categorize(engine, debit, "groceries", subcategory="fish")
    with pytest.raises(BankPipelineError, match=r"cannot label a credit .*income"):
        categorize(engine, credit, "groceries")
    result = categorize(engine, credit, "income", subcategory="salary", learn=False)
    assert result.rule_id is None
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(category_overrides)).scalar() == 1
        assert conn.execute(select(func.count()).select_from(category_rules)).scalar() == 0
