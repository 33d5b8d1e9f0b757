"""Hostile rows end to end: the simulator sends them over HTTP, Dagster imports, the ledger must
still equal the simulator's ground truth — on SQLite and PostgreSQL.

Faults (FaultConfig): NUL/escape/line-break characters in text, amounts corrected later under the
same stable id, a repeated unparseable row, an unknown currency, a foreign one; plus the
simulator's own pending card purchases that book under a new id with a tip added.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal

import pytest
import sqlalchemy as sa

from bank_pipeline import quality
from bank_pipeline.db.schema import (
    accounts,
    pending_transactions,
    quarantine,
    transaction_history,
    transactions,
)
from bank_pipeline.ingest.text import clean_text
from bank_pipeline_tests.fixtures.pipeline import TODAY

pytestmark = pytest.mark.slow

HOSTILE = dict(
    control_chars_every=6,
    correction_every=4,
    correction_lag_days=2,
    bad_row_every=9,
    unknown_currency_every=13,
    foreign_currency_every=11,
)


def _config(**faults):
    from bank_pipeline.simulator import FaultConfig, SimulatorConfig

    return SimulatorConfig(seed=42, today=TODAY, faults=FaultConfig(unattended_limit=None, **faults))


def _money(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def _spending(pipe) -> list[dict]:
    """The accounts with card spending (the savings account has none: leaving it out halves the runs)."""
    return [a for a in pipe.accounts if a.get("account_type") != "SAVINGS"]


def _run(pipe, first, last):
    """Ask the bank again for the whole window each time (`import --refetch`): a correction or a
    healed row for a settled day, outside the look-back window, only arrives when asked for."""
    from bank_pipeline.orchestration.partitions import FETCH_MODE_TAG

    return pipe.run(first, last, [a["account_key"] for a in _spending(pipe)], extra_tags={FETCH_MODE_TAG: "refetch"})


def _truth(pipe, first, last) -> dict:
    ids = {a["provider_account_id"] for a in _spending(pipe)}
    return {pid: a for pid, a in pipe.truth(first, last).items() if pid in ids}


def truth_rows(truth: dict) -> dict[str, Counter]:
    """What the ledger must hold per provider account id: (date, amount, currency, clean text)."""
    return {
        pid: Counter(
            (t["booking_date"], _money(t["amount"]), t["currency"], clean_text(t["description"]))
            for t in account["transactions"]
        )
        for pid, account in truth.items()
    }


def ledger_rows(pipe, first: dt.date, last: dt.date) -> dict[str, Counter]:
    out: dict[str, Counter] = {a["provider_account_id"]: Counter() for a in _spending(pipe)}
    with pipe.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                accounts.c.provider_account_id,
                transactions.c.booking_date,
                transactions.c.amount,
                transactions.c.currency,
                transactions.c.description,
            )
            .join(accounts, accounts.c.id == transactions.c.account_id)
            .where(transactions.c.booking_date.between(first, last))
        )
        for pid, day, amount, currency, description in rows:
            assert pid in out, "only the imported accounts have ledger rows"
            out[pid][(str(day)[:10], _money(amount), currency, description)] += 1
    return out


def pending_rows(pipe) -> dict[str, Counter]:
    out: dict[str, Counter] = {a["provider_account_id"]: Counter() for a in _spending(pipe)}
    with pipe.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                accounts.c.provider_account_id,
                pending_transactions.c.booking_date,
                pending_transactions.c.amount,
                pending_transactions.c.description,
            ).join(accounts, accounts.c.id == pending_transactions.c.account_id)
        )
        for pid, day, amount, description in rows:
            out[pid][(str(day)[:10], _money(amount), description)] += 1
    return out


def truth_pending(truth: dict) -> dict[str, Counter]:
    return {
        pid: Counter((p["booking_date"], _money(p["amount"]), clean_text(p["description"])) for p in a["pending"])
        for pid, a in truth.items()
    }


def _assert_ledger_is_truth(pipe, first, last):
    truth = _truth(pipe, first, last)
    assert ledger_rows(pipe, first, last) == truth_rows(truth)
    return truth


def _quarantine(pipe) -> list:
    with pipe.engine.connect() as conn:
        return conn.execute(sa.select(quarantine).order_by(quarantine.c.id)).all()


def test_hostile_rows_leave_the_ledger_equal_to_the_truth(pipeline_factory, move_clock):
    pipe = pipeline_factory("alice", _config(**HOSTILE), unattended_daily_budget=1000)
    first, last = TODAY - dt.timedelta(days=14), TODAY - dt.timedelta(days=1)

    outcomes = []
    for _ in range(3):  # the import, a rerun, and another: the same bad rows are seen three times
        outcomes = _run(pipe, first, last)
        truth = _assert_ledger_is_truth(pipe, first, last)
    bad = [b for a in truth.values() for b in a["bad_rows"]]
    texts = [t for a in truth.values() for t in a["transactions"] if "\x00" in t["description"]]
    foreign = [t for a in truth.values() for t in a["transactions"] if t["currency"] == "EUR"]
    assert len(bad) >= 3 and len(texts) >= 5 and foreign, "the faults must actually have been sent"
    entries = _quarantine(pipe)
    assert len(entries) == len(bad) and all(e.seen_count == 3 for e in entries)
    assert quality.unexplained_quarantine(pipe.engine) == len(bad)
    # Each import restages its fresh fetch, so every import's metadata counts the foreign rows.
    assert sum(o.metadata["normalized_transactions"]["currency_mismatch"] for o in outcomes) == len(foreign)
    assert sum(o.metadata["loaded_transactions"]["currency_mismatch"] for o in outcomes) == len(foreign)
    with pipe.engine.connect() as conn:
        flagged = conn.execute(sa.select(sa.func.count()).where(transactions.c.flags.like("%currency_mismatch%"))).scalar()
    assert flagged == len(foreign)

    # Three days later the bank has corrected the rows it first sent wrong; the look-back re-reads them.
    later = TODAY + dt.timedelta(days=3)
    move_clock(later)
    pipe.sim_admin("POST", "clock", json={"today": later.isoformat()})
    outcomes = _run(pipe, first, later - dt.timedelta(days=1))
    truth = _assert_ledger_is_truth(pipe, first, later - dt.timedelta(days=1))
    corrected = sum(o.metadata["loaded_transactions"]["corrected"] for o in outcomes)
    assert corrected >= 1
    with pipe.engine.connect() as conn:
        history = conn.execute(
            sa.select(transaction_history.c.amount, transactions.c.amount, transactions.c.description)
            .join(transactions, transactions.c.id == transaction_history.c.transaction_id)
        ).all()
    assert len(history) == corrected
    for old, new, description in history:  # the wrong version was a tenth, and PROVISIONAL
        assert abs(_money(old) * 10 - _money(new)) <= Decimal("0.10") and "PROVISIONAL" not in description

    bad = [b for a in truth.values() for b in a["bad_rows"]]  # the window is longer now
    assert len(_quarantine(pipe)) == len(bad)

    # The bank fixes its bad rows: they load, and their quarantine entries are resolved.
    pipe.sim_admin("POST", "faults", json={"bad_row_every": None, "unknown_currency_every": None})
    _run(pipe, first, later - dt.timedelta(days=1))
    truth = _assert_ledger_is_truth(pipe, first, later - dt.timedelta(days=1))
    without_id = [b for b in bad if not (b["normalised_provider_transaction_id"] or b["provider_transaction_id"])]
    assert quality.unexplained_quarantine(pipe.engine) == len(without_id)
    assert sum(1 for e in _quarantine(pipe) if e.resolved_at is not None) == len(bad) - len(without_id)

    # And a rerun changes nothing.
    before = ledger_rows(pipe, first, later)
    _run(pipe, first, later - dt.timedelta(days=1))
    assert ledger_rows(pipe, first, later) == before


def test_the_pending_set_after_each_day_equals_the_banks(pipeline_factory, move_clock):
    pipe = pipeline_factory("alice", _config(control_chars_every=5), unattended_daily_budget=1000)
    tipped = 0
    for offset in range(4):
        day = TODAY + dt.timedelta(days=offset)
        move_clock(day)
        pipe.sim_admin("POST", "clock", json={"today": day.isoformat()})
        _run(pipe, day - dt.timedelta(days=6), day)
        truth = _assert_ledger_is_truth(pipe, day - dt.timedelta(days=6), day)
        assert pending_rows(pipe) == truth_pending(truth), f"pending set differs on {day}"
        tipped += sum(
            1
            for a in truth.values()
            for t in a["transactions"]
            if t["pending_amount"] and _money(t["pending_amount"]) != _money(t["amount"])
        )
    assert sum(sum(c.values()) for c in truth_pending(truth).values()) >= 1
    assert tipped >= 1, "some pending rows must have booked at another amount (a tip)"


VARIANTS = {
    "control_chars": dict(control_chars_every=3),
    "correction": dict(correction_every=3, correction_lag_days=2),
    "bad_row": dict(bad_row_every=4),
    "unknown_currency": dict(unknown_currency_every=5),
    "foreign_currency": dict(foreign_currency_every=5),
}


def _sent(truth: dict, variant: str) -> int:
    """How many rows of the window this fault touched, from the simulator's ground truth."""
    rows = [t for a in truth.values() for t in a["transactions"]]
    if variant == "control_chars":
        return sum("\x00" in t["description"] for t in rows)
    if variant == "correction":
        return sum("PROVISIONAL" in t["description"] for t in rows)
    if variant == "foreign_currency":
        return sum(t["currency"] == "EUR" for t in rows)
    return sum(len(a["bad_rows"]) for a in truth.values())


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_fault_alone_leaves_the_ledger_equal_to_the_truth_and_a_rerun_changes_nothing(
    pipeline_factory, move_clock, variant
):
    """Each fault on its own (the test above has them all at once): after the import, after a
    rerun, and, for corrections, after the bank has corrected its rows."""
    pipe = pipeline_factory("alice", _config(**VARIANTS[variant]), unattended_daily_budget=1000)
    first, last = TODAY - dt.timedelta(days=7), TODAY - dt.timedelta(days=1)
    _run(pipe, first, last)
    truth = _assert_ledger_is_truth(pipe, first, last)
    assert _sent(truth, variant) >= 1, f"the simulator sent no {variant} row in the window"
    before, quarantined = ledger_rows(pipe, first, last), len(_quarantine(pipe))
    assert quarantined == sum(len(a["bad_rows"]) for a in truth.values())
    _run(pipe, first, last)
    assert ledger_rows(pipe, first, last) == before and len(_quarantine(pipe)) == quarantined
    if variant == "correction":
        later = TODAY + dt.timedelta(days=3)
        move_clock(later)
        pipe.sim_admin("POST", "clock", json={"today": later.isoformat()})
        outcomes = _run(pipe, first, last)
        truth = _assert_ledger_is_truth(pipe, first, last)
        assert _sent(truth, variant) == 0
        assert sum(o.metadata["loaded_transactions"]["corrected"] for o in outcomes) >= 1
