"""Hostile rows end to end: how many rows and faults an import survives, and what it costs in requests.

The simulator (seed 42) sends alice's current account and credit card with every hostile-row fault
on (control characters, amounts corrected later under the same stable id, a repeated unparseable
row, an unknown and a foreign currency). Three imports of the same window, the clock moved on so
the corrections arrive, then the bank heals its bad rows. After each step it prints whether the
ledger equals the ground truth, the quarantine's size, and the Data API requests made.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import tempfile
from collections import Counter
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from bank_pipeline import clock, quality
from bank_pipeline.db import make_engine, migrate
from bank_pipeline.db.schema import quarantine, transaction_history
from bank_pipeline_tests.bench._harness import reset_sim_stats, sim_stats
from bank_pipeline_tests.fixtures.clock import TODAY
from bank_pipeline_tests.fixtures.pipeline import Pipeline, settings_for
from bank_pipeline_tests.test_pipeline_hostile import (
    HOSTILE,
    _run,
    _spending,
    _truth,
    ledger_rows,
    truth_rows,
)


def _step(pipe, name: str, first: dt.date, last: dt.date) -> dict:
    reset_sim_stats(pipe.sim)
    outcomes = _run(pipe, first, last)
    truth = _truth(pipe, first, last)
    with pipe.engine.connect() as conn:
        entries = conn.execute(sa.select(quarantine.c.seen_count)).scalars().all()
        history = conn.execute(sa.select(sa.func.count()).select_from(transaction_history)).scalar_one()
    rows = sum(a["count"] for a in truth.values())
    equal = ledger_rows(pipe, first, last) == truth_rows(truth)
    corrected = sum(o.metadata["loaded_transactions"]["corrected"] for o in outcomes)
    print(
        f"{name:<28} window {first}..{last}: truth rows {rows}, ledger == truth: {equal}, "
        f"quarantine entries {len(entries)} (max seen {max(entries, default=0)}), "
        f"unexplained {quality.unexplained_quarantine(pipe.engine)}, corrected {corrected}, "
        f"history rows {history}, Data API requests {sim_stats(pipe.sim)['data_api_calls']}",
        flush=True,
    )
    return truth


@contextlib.contextmanager
def _pinned_clock():
    """The pipeline's clock (bank_pipeline.clock) at noon of a chosen day, as in the tests."""
    saved = os.environ.get(clock.OFFSET_ENV)

    def move(day: dt.date) -> None:
        noon = dt.datetime.combine(day, dt.time(12), dt.timezone.utc)
        os.environ[clock.OFFSET_ENV] = repr(clock.offset_for(noon))

    try:
        yield move
    finally:
        if saved is None:
            os.environ.pop(clock.OFFSET_ENV, None)
        else:
            os.environ[clock.OFFSET_ENV] = saved


def run(args) -> None:
    from bank_pipeline.simulator import FaultConfig, SimulatorConfig, run_in_thread

    days = 7 if args.quick else 14
    first, last = TODAY - dt.timedelta(days=days), TODAY - dt.timedelta(days=1)
    with _pinned_clock() as move_clock, tempfile.TemporaryDirectory() as tmp:
        move_clock(TODAY)
        tmp_path = Path(tmp)
        db_url = f"sqlite:///{tmp_path / 'bench.db'}"
        migrate(make_engine(db_url))
        (tmp_path / "dagster").mkdir()
        config = SimulatorConfig(seed=42, today=TODAY, faults=FaultConfig(unattended_limit=None, **HOSTILE))
        with run_in_thread(config, host="127.0.0.1", port=0) as sim, dg.instance_for_test(
            temp_dir=str(tmp_path / "dagster")
        ) as instance:
            settings = dataclasses.replace(settings_for(db_url, sim, tmp_path / "home"), unattended_daily_budget=100_000)
            pipe = Pipeline(settings, sim, instance, "alice")
            print(f"faults: {HOSTILE}; accounts: {[a['display_name'] for a in _spending(pipe)]}")
            for i in range(3):
                truth = _step(pipe, f"import {i + 1}", first, last)
            faults = Counter()
            for account in truth.values():
                faults.update(b["reason"] for b in account["bad_rows"])
                faults["control_chars"] += sum("\x00" in t["description"] for t in account["transactions"])
                faults["foreign_currency"] += sum(t["currency"] != account["currency"] for t in account["transactions"])
                faults["awaiting_correction"] += sum("PROVISIONAL" in t["description"] for t in account["transactions"])
            print(f"faults sent in the window: {dict(sorted(faults.items()))}")
            later = TODAY + dt.timedelta(days=3)
            move_clock(later)
            pipe.sim_admin("POST", "clock", json={"today": later.isoformat()})
            _step(pipe, "3 days later (corrections)", first, later - dt.timedelta(days=1))
            pipe.sim_admin("POST", "faults", json={"bad_row_every": None, "unknown_currency_every": None})
            _step(pipe, "bank heals its bad rows", first, later - dt.timedelta(days=1))
