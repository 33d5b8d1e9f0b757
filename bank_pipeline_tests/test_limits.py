"""The unattended-call budget and per-account leases, on both backends and under concurrency."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from bank_pipeline.errors import BankPipelineError
from bank_pipeline.limits import BudgetExhausted, LeaseTimeout, UnattendedBudget, account_lease
from bank_pipeline_tests.ingest_support import make_account

UTC = dt.timezone.utc


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.mark.date_sensitive
def test_budget_refuses_the_fifth_call_and_resets_next_utc_day(engine):
    account = make_account(engine)
    clock = Clock(dt.datetime(2026, 11, 20, 23, 59, tzinfo=UTC))
    budget = UnattendedBudget(engine, daily_limit=4, clock=clock)
    assert [budget.reserve(account["id"]) for _ in range(3)] == [1, 2, 3]
    with pytest.raises(BudgetExhausted) as info:
        budget.reserve(account["id"], calls=2)
    assert budget.remaining(account["id"]) == 1  # a refused reservation takes nothing
    assert budget.reserve(account["id"]) == 4
    with pytest.raises(BudgetExhausted) as info:
        budget.reserve(account["id"])
    message = str(info.value)
    assert isinstance(info.value, BankPipelineError)
    assert f"account {account['id']} ({account['account_key']}, Club Lloyds)" in message
    assert "4 of 4" in message and "resets at 00:00 UTC" in message and "2026-11-21T00:00:00+00:00" in message
    # One second past midnight UTC: a new day, a fresh budget.
    clock.now = dt.datetime(2026, 11, 21, 0, 0, 1, tzinfo=UTC)
    assert budget.remaining(account["id"]) == 4 and budget.reserve(account["id"]) == 1
    other = make_account(engine)
    assert budget.remaining(other["id"]) == 4  # per account


def test_budget_is_never_exceeded_under_concurrent_reserves(engine):
    account = make_account(engine)
    budget = UnattendedBudget(engine, daily_limit=4)
    granted, refused = [], []
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        for _ in range(3):
            try:
                granted.append(budget.reserve(account["id"]))
            except BudgetExhausted:
                refused.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(granted) == [1, 2, 3, 4] and len(refused) == 20
    assert budget.remaining(account["id"]) == 0


def test_a_lease_excludes_a_second_holder_and_times_out_clearly(engine):
    account = make_account(engine)
    with account_lease(engine, account["id"], "run-a", wait_seconds=0):
        started = time.monotonic()
        with pytest.raises(LeaseTimeout) as info:
            with account_lease(engine, account["id"], "run-b", wait_seconds=0.3, poll=0.05):
                pytest.fail("second holder entered")  # pragma: no cover
        assert time.monotonic() - started >= 0.3
        assert "is being imported by run-a" in str(info.value) and "gave up waiting after 0.3s" in str(
            info.value
        )
    # Released on exit: the next holder gets it at once.
    with account_lease(engine, account["id"], "run-b", wait_seconds=0):
        pass


def test_a_waiting_holder_gets_the_lease_when_released(engine):
    account = make_account(engine)
    order = []
    entered = threading.Event()

    def first():
        with account_lease(engine, account["id"], "run-a", wait_seconds=0):
            entered.set()
            time.sleep(0.3)
            order.append("a-done")

    t = threading.Thread(target=first)
    t.start()
    entered.wait(5)
    with account_lease(engine, account["id"], "run-b", wait_seconds=10, poll=0.05):
        order.append("b-in")
    t.join()
    assert order == ["a-done", "b-in"]


@pytest.mark.date_sensitive
def test_an_expired_lease_is_taken_over(engine):
    account = make_account(engine)
    clock = Clock(dt.datetime(2026, 11, 20, 9, tzinfo=UTC))
    crashed = account_lease(engine, account["id"], "crashed-run", ttl_seconds=60, clock=clock)
    crashed.__enter__()  # never released, as if the process died
    clock.now += dt.timedelta(seconds=30)
    with pytest.raises(LeaseTimeout):
        with account_lease(engine, account["id"], "run-b", wait_seconds=0, clock=clock):
            pass  # pragma: no cover
    clock.now += dt.timedelta(seconds=31)
    with account_lease(engine, account["id"], "run-b", wait_seconds=0, clock=clock) as lease:
        assert lease.holder == "run-b"
