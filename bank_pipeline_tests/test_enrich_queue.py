"""The model queue against the fake Messages API: provisional answers now, the whole queue to the
model when a batch has gathered or the oldest has waited the delay, Message Batches for large
sends; overrides never move."""

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


def _calls(engine, run_id: str) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(llm_calls).where(llm_calls.c.run_id == run_id)).mappings().all()
    return [dict(r) for r in rows]


def _asked_in(request: dict) -> list[str]:
    text = request["messages"][0]["content"]
    return [t["id"] for t in json.loads(text[text.index("{") :])["transactions"]]


def _asked(fake) -> list[str]:
    return [i for request in fake.message_requests for i in _asked_in(request)]


def test_a_daily_run_answers_provisionally_and_calls_when_the_batch_fills(
    engine, fake_anthropic, anthropic_model_factory
):
    model = anthropic_model_factory(batch_size=50, queue=QueuePolicy(batch=25))
    account = make_account(engine)
    first = _shops(engine, account, DAY, 0, 10)
    stats = enrich_account_days(engine, {account: [DAY]}, model, run_id="day-1")
    rows = _rows(engine)
    assert fake_anthropic.message_requests == []
    assert stats.provisional == 10 and stats.queued == 10 and stats.model_calls == 0
    assert all(rows[i]["flags"] == "provisional" and rows[i]["provider"] == "offline" for i in first)
    assert _queued(engine) == set(first)

    second = _shops(engine, account, DAY, 10, 14)  # 24 queued: one short of a batch, nothing goes
    stats = enrich_account_days(engine, {account: [DAY]}, model, run_id="day-1-again")
    assert fake_anthropic.message_requests == [] and stats.queued == 24

    later = _shops(engine, account, TODAY, 24, 6)  # 30 queued: all of them go, in one call
    stats = enrich_account_days(engine, {account: [TODAY]}, model, run_id="day-2")
    assert stats.model_calls == 1 and len(fake_anthropic.message_requests) == 1
    sent = {int(i) for i in _asked(fake_anthropic)}
    assert sent == set(first + second + later)
    rows = _rows(engine)
    assert all(rows[i]["provider"] == "anthropic" and not rows[i]["flags"] for i in sent)
    assert stats.replaced == 30 and stats.queued == 0 and _queued(engine) == set()


def test_a_send_larger_than_a_call_is_split_evenly_and_each_call_carries_a_batch(
    engine, fake_anthropic, anthropic_model_factory
):
    model = anthropic_model_factory(batch_size=50, queue=QueuePolicy(batch=25))
    account = make_account(engine)
    ids = _shops(engine, account, DAY, 0, 51)
    stats = enrich_account_days(engine, {account: [DAY]}, model, run_id="big")
    assert stats.model_calls == 2 and len(fake_anthropic.message_requests) == 2
    calls = _calls(engine, "big")
    assert sorted(c["batch_size"] for c in calls) == [25, 26]  # not 50 + 1
    assert all(c["outcome"] == "ok" for c in calls)  # every answer fitted its max_tokens
    assert {int(i) for i in _asked(fake_anthropic)} == set(ids) and _queued(engine) == set()


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


@pytest.mark.date_sensitive
def test_what_is_queued_rides_along_when_the_delay_sends_the_queue(
    engine, fake_anthropic, anthropic_model_factory, move_clock
):
    model = anthropic_model_factory(batch_size=50, queue=QueuePolicy(batch=25, delay=timedelta(hours=24)))
    account = make_account(engine)
    (unsure,) = _shops(engine, account, DAY, 0, 1)
    enrich_account_days(engine, {account: [DAY]}, model, run_id="r1")
    move_clock(datetime.combine(TODAY, datetime.min.time(), timezone.utc) + timedelta(hours=37))  # 25h later
    (tesco,) = add_transactions(engine, account, [(TODAY, "CARD PAYMENT TO TESCO STORES 3297", -8)])
    stats = enrich_account_days(engine, {account: [TODAY]}, model, run_id="r2")
    assert stats.provisional == 1  # the new one was answered provisionally, then went at once
    assert stats.model_calls == 1 and sorted(map(int, _asked(fake_anthropic))) == sorted([unsure, tesco])
    assert _queued(engine) == set() and stats.replaced == 2


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
    ids = _shops(engine, account, DAY, 0, 12)  # 12 queued ≥ 5: all go, 12 ≥ 10 → one Message Batch
    fake_anthropic.batch_polls = 1  # still in progress at the next check
    stats = enrich_account_days(engine, {account: [DAY]}, model, run_id="b1")
    assert stats.message_batches == 1 and stats.model_calls == 0
    assert fake_anthropic.direct_message_requests == []
    (batch,) = fake_anthropic.batches.values()
    assert [r["custom_id"] for r in batch["requests"]] == ["part-0", "part-1", "part-2"]
    for r in batch["requests"]:  # the documented shape: {"custom_id", "params"} with Messages params
        assert set(r) == {"custom_id", "params"}
        assert {"model", "max_tokens", "system", "tools", "tool_choice", "messages"} <= set(r["params"])
        assert r["params"]["max_tokens"] >= 400 + 150 * 4
    assert [len(_asked_in(r["params"])) for r in batch["requests"]] == [4, 4, 4]  # 12 in 3, evenly
    assert set(_asked(fake_anthropic)) == {str(i) for i in ids}
    assert stats.queued == 12 and stats.in_message_batches == 12

    stats = enrich_account_days(engine, {account: [TODAY]}, model, run_id="b2")  # in progress
    assert stats.replaced == 0 and all(_rows(engine)[i]["flags"] == "provisional" for i in ids)

    stats = enrich_account_days(engine, {account: [TODAY]}, model, run_id="b3")  # ended
    rows = _rows(engine)
    assert stats.replaced == 12 and all(rows[i]["provider"] == "anthropic" for i in ids)
    assert _queued(engine) == set()
    calls = _calls(engine, "b3")
    assert len(calls) == 3 and all(c["batch_size"] == 4 and c["provider"] == "anthropic-batch" for c in calls)
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


def test_a_failed_message_batch_request_goes_back_to_the_queue(
    engine, fake_anthropic, anthropic_model_factory
):
    model = anthropic_model_factory(batch_size=5, queue=QueuePolicy(batch=5, batch_api_min=10))
    account = make_account(engine)
    ids = _shops(engine, account, DAY, 0, 15)  # three requests of 5
    fake_anthropic.batch_outcomes = ["succeeded", "errored", "expired"]
    enrich_account_days(engine, {account: [DAY]}, model, run_id="b1")
    (batch,) = fake_anthropic.batches.values()
    lost = {int(i) for r in batch["requests"][1:] for i in _asked_in(r["params"])}
    stats = enrich_account_days(engine, {account: [TODAY]}, model, run_id="b2")  # ended
    rows = _rows(engine)
    assert stats.replaced == 5 and {i for i in ids if rows[i]["provider"] == "anthropic"} == set(ids) - lost
    assert all(rows[i]["flags"] == "provisional" for i in lost)  # still shown, and queued again
    assert _queued(engine) == lost and stats.in_message_batches == 0
    assert sorted(c["outcome"] for c in _calls(engine, "b2")) == ["error", "error", "ok"]

    stats = enrich_account_days(engine, {account: [TODAY]}, model, run_id="b3")  # 10 ≥ 5: they go again
    assert stats.message_batches == 1 and len(fake_anthropic.batches) == 2
    stats = enrich_account_days(engine, {account: [TODAY]}, model, run_id="b4")
    assert stats.replaced == 10 and _queued(engine) == set()
    assert all(r["provider"] == "anthropic" for r in _rows(engine).values())


@pytest.mark.date_sensitive
def test_confident_answers_wait_past_the_longest_delay_until_earlier_calls_can_pay_for_a_small_one(
    engine, fake_anthropic, anthropic_model_factory, move_clock
):
    policy = QueuePolicy(batch=25, delay=timedelta(hours=24), max_delay=timedelta(days=10))
    model = anthropic_model_factory(batch_size=50, queue=policy)
    account = make_account(engine)
    (tesco,) = add_transactions(engine, account, [(DAY, "CARD PAYMENT TO TESCO STORES 3297", -8)])
    enrich_account_days(engine, {account: [DAY]}, model, run_id="r1")
    assert _rows(engine)[tesco]["confidence"] >= 0.5  # a known merchant: a useful answer already
    noon = datetime.combine(TODAY, datetime.min.time(), timezone.utc) + timedelta(hours=12)
    move_clock(noon + timedelta(days=11))
    enrich_account_days(engine, {account: [TODAY]}, model, run_id="r2")
    # Past the longest delay, but a call of one would cost 25 times its share: it waits.
    assert fake_anthropic.message_requests == [] and _queued(engine) == {tesco}

    day = TODAY + timedelta(days=11)
    shops = _shops(engine, account, day, 0, 47)  # 48 queued: one call of 48, 23 beyond a batch
    enrich_account_days(engine, {account: [day]}, model, run_id="r3")
    assert {int(i) for i in _asked(fake_anthropic)} == {tesco, *shops} and _queued(engine) == set()

    known = add_transactions(
        engine,
        account,
        [(day, "CARD PAYMENT TO SAINSBURYS S/MKTS", -30), (day, "CARD PAYMENT TO BOOTS 1123", -4)],
    )
    enrich_account_days(engine, {account: [day]}, model, run_id="r4")
    assert _queued(engine) == set(known) and all(_rows(engine)[i]["confidence"] >= 0.5 for i in known)
    move_clock(noon + timedelta(days=20))
    enrich_account_days(engine, {account: [day]}, model, run_id="r5")
    assert _queued(engine) == set(known)  # not waited 10 days yet
    move_clock(noon + timedelta(days=22))
    stats = enrich_account_days(engine, {account: [day]}, model, run_id="r6")
    assert stats.model_calls == 1 and _queued(engine) == set()  # 23 spare + 2 pay for this call
    assert sorted(map(int, _asked_in(fake_anthropic.message_requests[-1]))) == sorted(known)


def test_plan_status_shows_queued_provisional_and_savings(engine, fake_anthropic, anthropic_model_factory):
    from bank_pipeline.enrich.status import enrichment_status

    model = anthropic_model_factory(batch_size=5, queue=QueuePolicy(batch=5, batch_api_min=5))
    account = make_account(engine)
    _shops(engine, account, DAY, 0, 7)
    enrich_account_days(engine, {account: [DAY]}, model, run_id="s1")  # all 7 go in a Message Batch
    status = enrichment_status(engine, Decimal("0.0025"), 25)
    assert (status.queued, status.in_message_batches, status.provisional) == (7, 7, 7)
    add_transactions(engine, account, [(TODAY, "CARD PAYMENT TO QZAA VENDOR", -3)])  # a repeat: cache
    _shops(engine, account, TODAY, 7, 2)  # two new ones: short of a batch, they wait
    enrich_account_days(engine, {account: [TODAY]}, model, run_id="s2")  # collected; the repeat is cached
    status = enrichment_status(engine, Decimal("0.0025"), 25)
    assert (status.queued, status.in_message_batches, status.provisional) == (2, 0, 2)
    assert status.by_cache == 1 and status.saved_usd_cache == Decimal("0.0001")
    assert status.saved_usd_batch_api > 0
    assert "2 transaction(s) waiting for the model" in status.describe()


def test_the_queue_goes_whole_when_a_batch_gathers_or_one_has_waited_too_long():
    from bank_pipeline.enrich.queue import due

    now = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    policy = QueuePolicy(batch=3, delay=timedelta(days=1), max_delay=timedelta(days=30))
    old, new, ancient = now - timedelta(days=2), now - timedelta(hours=1), now - timedelta(days=31)
    assert not due([], policy, now, spare=9)
    assert not due([(old, False), (new, True)], policy, now, spare=0)  # nothing late, short of a batch
    assert due([(new, False)] * 3, policy, now, spare=-5)  # a batch has gathered
    assert due([(old, False), (old, True)], policy, now, spare=-5)  # an unsure one waited the delay
    assert not due([(old, False), (old, False)], policy, now, spare=9)  # confident ones wait longer
    # Past the longest delay: only when earlier calls carried enough spare to pay for a short one.
    assert not due([(ancient, False), (new, False)], policy, now, spare=0)
    assert due([(ancient, False), (new, False)], policy, now, spare=1)
