"""The model queue against the fake Messages API: provisional answers now, the model when a batch
is full or the oldest has waited the delay, Message Batches for large sends; overrides never move."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

from bank_pipeline.db.schema import enrichment_queue, enrichments, llm_calls
from bank_pipeline.enrich import categorize, enrich_account_days
from bank_pipeline.enrich.queue import QueuePolicy
from bank_pipeline_tests.enrich_support import add_transactions, make_account
from bank_pipeline_tests.fixtures.clock import TODAY

DAY = TODAY - timedelta(days=1)


def _rows(engine) -> dict[int, dict]:
    with engine.connect() as conn:
        return {r["transaction_id"]: dict(r) for r in conn.execute(select(enrichments)).mappings()}


def _queued(engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(select(enrichment_queue.c.transaction_id)).scalars())


def _shops(engine, account: int, day: date, start: int, count: int) -> list[int]:
    """`count` distinct unknown payees (the offline model cannot place them)."""
    names = [f"QZ{chr(65 + (start + i) // 26)}{chr(65 + (start + i) % 26)}" for i in range(count)]
    rows = [(day, f"CARD PAYMENT TO {name} VENDOR", -4 - i) for i, name in enumerate(names)]
    return add_transactions(engine, account, rows)


def _asked(fake) -> list[str]:
    ids = []
    for request in fake.message_requests:
        text = request["messages"][0]["content"]
        ids += [t["id"] for t in json.loads(text[text.index("{") :])["transactions"]]
    return ids


def test_a_daily_run_answers_provisionally_and_calls_when_the_batch_fills(
    engine, fake_anthropic, anthropic_model_factory
):
    model = anthropic_model_factory(batch_size=25, queue=QueuePolicy(batch=25))
    account = make_account(engine)
    first = _shops(engine, account, DAY, 0, 10)
    stats = enrich_account_days(engine, {account: [DAY]}, model, run_id="day-1")
    rows = _rows(engine)
    assert fake_anthropic.message_requests == []
    assert stats.provisional == 10 and stats.queued == 10 and stats.model_calls == 0
    assert all(rows[i]["flags"] == "provisional" and rows[i]["provider"] == "offline" for i in first)
    assert _queued(engine) == set(first)

    later = _shops(engine, account, TODAY, 10, 20)  # 30 queued: one full batch of 25 goes
    stats = enrich_account_days(engine, {account: [TODAY]}, model, run_id="day-2")
    assert stats.model_calls == 1 and len(fake_anthropic.message_requests) == 1
    sent = {int(i) for i in _asked(fake_anthropic)}
    assert len(sent) == 25 and set(first) <= sent  # oldest first
    rows = _rows(engine)
    assert all(rows[i]["provider"] == "anthropic" and not rows[i]["flags"] for i in sent)
    assert stats.replaced == 25
    assert _queued(engine) == set(first + later) - sent
    assert all(rows[i]["flags"] == "provisional" for i in _queued(engine))


@pytest.mark.date_sensitive
def test_the_oldest_waiting_past_the_delay_sends_a_partial_batch(
    engine, fake_anthropic, anthropic_model_factory, move_clock
):
    model = anthropic_model_factory(batch_size=25, queue=QueuePolicy(batch=25, delay=timedelta(hours=24)))
    account = make_account(engine)
    ids = _shops(engine, account, DAY, 0, 3)
    enrich_account_days(engine, {account: [DAY]}, model, run_id="r1")
    move_clock(datetime.combine(TODAY, datetime.min.time(), timezone.utc) + timedelta(hours=35))  # 23h later
    enrich_account_days(engine, {account: [TODAY]}, model, run_id="r2")
    assert fake_anthropic.message_requests == [] and _queued(engine) == set(ids)

    move_clock(datetime.combine(TODAY, datetime.min.time(), timezone.utc) + timedelta(hours=37))  # 25h later
    stats = enrich_account_days(engine, {account: [TODAY]}, model, run_id="r3")
    assert stats.model_calls == 1 and sorted(int(i) for i in _asked(fake_anthropic)) == sorted(ids)
    assert _queued(engine) == set()
    assert {r["provider"] for r in _rows(engine).values()} == {"anthropic"}


def test_an_override_is_never_replaced_and_not_sent(
    engine, fake_anthropic, anthropic_model_factory, move_clock
):
    model = anthropic_model_factory(batch_size=25, queue=QueuePolicy(batch=25, delay=timedelta(hours=1)))
    account = make_account(engine)
    mine, other = _shops(engine, account, DAY, 0, 2)
    enrich_account_days(engine, {account: [DAY]}, model, run_id="r1")
    categorize(engine, mine, "gifts")
    move_clock(datetime.combine(TODAY, datetime.min.time(), timezone.utc) + timedelta(hours=14))
    enrich_account_days(engine, {account: [TODAY]}, model, run_id="r2")
    assert [int(i) for i in _asked(fake_anthropic)] == [other]
    rows = _rows(engine)
    assert (rows[mine]["category"], rows[mine]["source"]) == ("gifts", "override")
    assert rows[other]["provider"] == "anthropic"
    assert _queued(engine) == set()


@pytest.mark.date_sensitive
def test_a_rule_learned_while_queued_answers_without_the_model(
    engine, fake_anthropic, anthropic_model_factory, move_clock
):
    model = anthropic_model_factory(batch_size=25, queue=QueuePolicy(batch=25, delay=timedelta(hours=1)))
    account = make_account(engine)
    first, second = add_transactions(
        engine, account, [(DAY, "CARD PAYMENT TO QZX CRAFTS", -4), (TODAY, "CARD PAYMENT TO QZX CRAFTS", -6)]
    )
    enrich_account_days(engine, {account: [DAY]}, model, run_id="r1")
    enrich_account_days(engine, {account: [TODAY]}, model, run_id="r2")
    categorize(engine, first, "entertainment", subcategory="hobbies")
    move_clock(datetime.combine(TODAY, datetime.min.time(), timezone.utc) + timedelta(hours=14))
    enrich_account_days(engine, {account: [TODAY]}, model, run_id="r3")
    assert fake_anthropic.message_requests == []
    row = _rows(engine)[second]
    assert (row["category"], row["source"]) == ("entertainment", "rule")


def test_message_batches_carry_large_sends_at_half_price(engine, fake_anthropic, anthropic_model_factory):
    model = anthropic_model_factory(batch_size=5, queue=QueuePolicy(batch=5, batch_api_min=10))
    account = make_account(engine)
    ids = _shops(engine, account, DAY, 0, 12)  # 10 due (two whole batches of 5) → one Message Batch
    fake_anthropic.batch_polls = 1  # still in progress at the next check
    stats = enrich_account_days(engine, {account: [DAY]}, model, run_id="b1")
    assert stats.message_batches == 1 and stats.model_calls == 0
    assert fake_anthropic.direct_message_requests == []
    (batch,) = fake_anthropic.batches.values()
    assert [r["custom_id"] for r in batch["requests"]] == ["part-0", "part-1"]
    for r in batch["requests"]:
        assert set(r) == {"custom_id", "params"}
        assert {"model", "max_tokens", "system", "tools", "tool_choice", "messages"} <= set(r["params"])
    sent = {int(i) for i in _asked(fake_anthropic)}
    assert len(sent) == 10 and stats.queued == 12 and stats.in_message_batches == 10

    stats = enrich_account_days(engine, {account: [TODAY]}, model, run_id="b2")  # in progress
    assert stats.replaced == 0 and all(_rows(engine)[i]["flags"] == "provisional" for i in sent)

    stats = enrich_account_days(engine, {account: [TODAY]}, model, run_id="b3")  # ended
    rows = _rows(engine)
    assert stats.replaced == 10 and all(rows[i]["provider"] == "anthropic" for i in sent)
    assert _queued(engine) == set(ids) - sent
    with engine.connect() as conn:
        calls = conn.execute(select(llm_calls).where(llm_calls.c.run_id == "b3")).mappings().all()
    assert len(calls) == 2 and all(c["batch_size"] == 5 for c in calls)
    from bank_pipeline.enrich.pricing import PriceTable

    price = PriceTable.from_env().get("claude-haiku-4-5")
    for c in calls:
        full = price.cost(
            c["input_tokens"],
            c["output_tokens"],
            c["cache_creation_input_tokens"],
            c["cache_read_input_tokens"],
        )
        assert Decimal(str(c["cost_usd"])) == (full / 2).quantize(Decimal("0.00000001"))


def test_confident_provisional_answers_wait_for_a_full_batch_up_to_the_longest_delay(
    engine, fake_anthropic, anthropic_model_factory, move_clock
):
    policy = QueuePolicy(batch=25, delay=timedelta(hours=24), max_delay=timedelta(days=10))
    model = anthropic_model_factory(batch_size=25, queue=policy)
    account = make_account(engine)
    ids = add_transactions(engine, account, [(DAY, "CARD PAYMENT TO TESCO STORES 3297", -8)])
    enrich_account_days(engine, {account: [DAY]}, model, run_id="r1")
    assert _rows(engine)[ids[0]]["confidence"] >= 0.5  # a known merchant: a useful answer already
    noon = datetime.combine(TODAY, datetime.min.time(), timezone.utc) + timedelta(hours=12)
    move_clock(noon + timedelta(days=3))
    enrich_account_days(engine, {account: [TODAY]}, model, run_id="r2")
    assert fake_anthropic.message_requests == [] and _queued(engine) == set(ids)
    move_clock(noon + timedelta(days=11))
    enrich_account_days(engine, {account: [TODAY]}, model, run_id="r3")
    assert [int(i) for i in _asked(fake_anthropic)] == ids and _queued(engine) == set()


def test_plan_status_shows_queued_provisional_and_savings(engine, fake_anthropic, anthropic_model_factory):
    from bank_pipeline.enrich.status import enrichment_status

    model = anthropic_model_factory(batch_size=5, queue=QueuePolicy(batch=5, batch_api_min=5))
    account = make_account(engine)
    _shops(engine, account, DAY, 0, 7)
    add_transactions(engine, account, [(TODAY, "CARD PAYMENT TO QZAA VENDOR", -3)])  # a repeat: cache
    enrich_account_days(engine, {account: [DAY]}, model, run_id="s1")  # 5 go in a Message Batch
    status = enrichment_status(engine, Decimal("0.0025"), 25)
    assert (status.queued, status.in_message_batches, status.provisional) == (7, 5, 7)
    enrich_account_days(engine, {account: [TODAY]}, model, run_id="s2")  # collected; the repeat is cached
    status = enrichment_status(engine, Decimal("0.0025"), 25)
    assert (status.queued, status.in_message_batches, status.provisional) == (2, 0, 2)
    assert status.by_cache == 1 and status.saved_usd_cache == Decimal("0.0001")
    assert status.saved_usd_batch_api > 0
    assert "2 transaction(s) waiting for the model" in status.describe()


def test_due_fills_a_late_batch_with_the_oldest_others_and_keeps_the_rest_for_a_full_one():
    from bank_pipeline.enrich.queue import due

    now = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    policy = QueuePolicy(batch=3, delay=timedelta(days=1), max_delay=timedelta(days=30))
    old, new = now - timedelta(days=2), now - timedelta(hours=1)
    confident = [(old, False)] * 4
    assert due(confident + [(new, False)], policy, now) == [0, 1, 2]  # one whole batch
    assert due([(old, False), (new, True)], policy, now) == []  # nothing late, no whole batch
    assert due([(old, False), (old, True), (new, False)], policy, now) == [0, 1, 2]  # late: a batch
    mixed = [(old, False), (old, False), (old, False), (old, True)]
    assert due(mixed, policy, now) == [0, 1, 3]  # the late unsure one first, filled up to a batch
    assert due([(old, True), (old, False), (old, False), (old, False), (new, False)], policy, now) == [
        0,
        1,
        2,
    ]
    assert due([(now - timedelta(days=31), False), (new, False)], policy, now) == [0, 1]
