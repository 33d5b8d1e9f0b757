"""The backfill planner on rows inserted directly: runs, bank calls, budget, expected volume and cost."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

import pytest
import sqlalchemy as sa

from bank_pipeline.cli import main
from bank_pipeline.db import make_engine, utcnow
from bank_pipeline.db.schema import accounts, api_call_budget, connections, enrichments, transactions
from bank_pipeline.planning import PlanError, format_plan, plan_backfill
from bank_pipeline_tests.fixtures.clock import TODAY  # noqa: E402  (the pinned day)

PLAN_ARGS = dict(
    max_window_days=90, enrich_batch_size=40, price_per_call_estimate="0.01", unattended_budget=4
)


def _seed(engine) -> dict[str, int]:
    """Two active accounts (one with history) and one inactive."""
    now = utcnow()
    ids = {}
    with engine.begin() as conn:
        conn_id = conn.execute(
            connections.insert().values(created_at=now, updated_at=now).returning(connections.c.id)
        ).scalar_one()
        for key, name, active in [
            ("acur", "Current", True),
            ("acard", "Card", True),
            ("aold", "Closed", False),
        ]:
            ids[key] = conn.execute(
                accounts.insert()
                .values(account_key=key, identity=f"tl:{key}", connection_id=conn_id, kind="account",
                        provider_account_id=f"p-{key}", display_name=name, active=active,
                        created_at=now, updated_at=now)
                .returning(accounts.c.id)
            ).scalar_one()  # fmt: skip
        # 'acur' history: 200 days; the last 90 days hold 3 a day, older days 10 a day (ignored).
        last = dt.date(2026, 11, 19)
        rows = []
        for offset in range(200):
            day = last - dt.timedelta(days=offset)
            for n in range(3 if offset < 90 else 10):
                rows.append(
                    dict(dedup_key=f"{day}-{n}", account_id=ids["acur"], transaction_id=f"t{day}{n}",
                         booking_date=day, booked_at=dt.datetime.combine(day, dt.time(12), dt.timezone.utc),
                         amount=Decimal("-1.50"), currency="GBP", direction="debit", description="COFFEE",
                         loaded_at=now)
                )  # fmt: skip
        conn.execute(transactions.insert(), rows)
        txn_ids = list(
            conn.execute(sa.select(transactions.c.id).order_by(transactions.c.id).limit(4)).scalars()
        )
        # 1 of 4 past enrichments needed the model: 75% served by the free tiers.
        conn.execute(
            enrichments.insert(),
            [dict(transaction_id=t, category="eating_out", source=s, updated_at=now)
             for t, s in zip(txn_ids, ["model", "cache", "rule", "override"], strict=True)],
        )  # fmt: skip
        conn.execute(
            api_call_budget.insert(),
            [dict(account_id=ids["acur"], day=TODAY, unattended_calls=3),
             dict(account_id=ids["acur"], day=TODAY - dt.timedelta(days=1), unattended_calls=4)],
        )  # fmt: skip
    return ids


def test_year_backfill_coalesces_into_one_run_per_window_and_few_calls_per_account(engine):
    _seed(engine)
    plan = plan_backfill(engine, "2025-11-20", "2026-11-19", **PLAN_ARGS, today=TODAY, budget_day=TODAY)
    assert plan.days == 365
    assert [a.account_key for a in plan.accounts] == ["acard", "acur"]  # active only, by key
    assert plan.runs == 2 * 5 and plan.partitions == 730  # one run per account and 90-day window
    cur = {a.account_key: a for a in plan.accounts}["acur"]
    card = {a.account_key: a for a in plan.accounts}["acard"]
    assert cur.windows[0] == (dt.date(2025, 11, 20), dt.date(2026, 2, 17))
    assert len(cur.windows) == 5 and cur.pending_call and cur.api_calls == 6
    assert cur.budget_used_today == 3 and cur.budget_remaining_today == 1 and not cur.fits_budget
    assert card.budget_remaining_today == 4 and not card.fits_budget  # 6 calls > 4 a day
    assert not plan.fits_budget

    assert cur.history_days == 90 and cur.history_per_day == pytest.approx(3.0)
    assert cur.expected_transactions == pytest.approx(3.0 * 365)
    assert plan.cache_hit_rate == pytest.approx(0.75)
    calls = math.ceil(3 * 365 * 0.25 / 40)
    assert cur.expected_model_calls == calls
    assert cur.estimated_cost_usd == Decimal("0.01") * calls
    assert card.expected_transactions is None and card.expected_model_calls is None
    assert card.estimated_cost_usd is None
    assert plan.expected_transactions == pytest.approx(1095) and plan.unknown_history == ["acard"]

    assert cur.days_to_land == 1 + math.ceil((6 - 1) / 4) and card.days_to_land == 1 + math.ceil((6 - 4) / 4)
    text = format_plan(plan)
    assert "one per account and bank window" in text
    assert "Over today's budget for acard, acur" in text and "over 3 UTC days" in text
    assert "Expected transactions unknown for acard" in text
    assert "5+1=6" in text and "75%" in text


@pytest.mark.date_sensitive
def test_short_recent_range_fits_budget_and_short_history_averages_over_its_days(engine):
    ids = _seed(engine)
    with engine.begin() as conn:
        conn.execute(transactions.delete().where(transactions.c.booking_date < dt.date(2026, 11, 10)))
    plan = plan_backfill(
        engine, "2026-11-18", "2026-11-20", ["acur"], **PLAN_ARGS, today=TODAY, budget_day=TODAY
    )
    (cur,) = plan.accounts
    assert cur.windows == [(dt.date(2026, 11, 18), dt.date(2026, 11, 20))] and cur.api_calls == 2
    assert cur.budget_remaining_today == 1 and not cur.fits_budget
    assert cur.history_days == 10 and cur.expected_transactions == pytest.approx(9.0)
    # An old range needs no pending call; a fresh day's budget fits it.
    old = plan_backfill(
        engine,
        "2026-01-01",
        "2026-01-31",
        ["acur"],
        **PLAN_ARGS,
        today=TODAY,
        budget_day=TODAY + dt.timedelta(days=1),
    )
    assert old.accounts[0].api_calls == 1 and old.fits_budget
    assert ids  # seeded


@pytest.mark.date_sensitive
def test_a_backfill_keeps_the_reserve_for_the_daily_import(engine):
    _seed(engine)
    args = {**PLAN_ARGS, "backfill_reserve": 2}
    plan = plan_backfill(engine, "2026-01-01", "2026-01-31", ["acur", "acard"], **args, today=TODAY, budget_day=TODAY)
    cur, card = plan.accounts
    assert cur.budget_remaining_today == 0 and not cur.fits_budget  # 3 used of the 4 - 2 a backfill may use
    assert card.budget_remaining_today == 2 and card.fits_budget
    assert "keeps 2 of them for the daily import" in format_plan(plan)


def test_one_run_per_account_for_a_short_range(engine):
    _seed(engine)
    plan = plan_backfill(
        engine, "2026-11-19", "2026-11-19", ["acur", "acard", "aold"], **PLAN_ARGS, today=TODAY
    )
    assert plan.runs == 3
    assert [a.account_key for a in plan.accounts] == ["acur", "acard", "aold"]
    assert not plan.accounts[2].active and "(inactive)" in format_plan(plan)


def test_unknown_price_and_no_enrichment_history(engine):
    _seed(engine)
    with engine.begin() as conn:
        conn.execute(enrichments.delete())
    plan = plan_backfill(
        engine,
        "2026-10-01",
        "2026-10-31",
        ["acur"],
        **{**PLAN_ARGS, "price_per_call_estimate": None},
        today=TODAY,
    )
    assert plan.cache_hit_rate is None
    assert plan.accounts[0].expected_model_calls == math.ceil(93 / 40)  # nothing assumed cached
    assert plan.estimated_cost_usd is None and "price unknown" in format_plan(plan)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("2026-11-10", "2026-11-01", None), "invalid date range: --from 2026-11-10 is after --to 2026-11-01"),
        (("2026-11-01", "2026-11-30", None), "--to 2026-11-30 is in the future (today is 2026-11-20); there are no partitions for days that have not started"),
        (("2026-13-01", "2026-11-30", None), "--from must be a date like 2026-01-31, got '2026-13-01'"),
        (("2026-11-01", "2026-11-10", ["acur", "nope", "nada"]), "unknown account keys nope, nada (known accounts: acard, acur, aold)"),
    ],
    ids=["inverted", "future", "not-a-date", "unknown-account"],
)  # fmt: skip
def test_precise_errors(engine, args, message):
    _seed(engine)
    with pytest.raises(PlanError) as excinfo:
        plan_backfill(engine, *args, **PLAN_ARGS, today=TODAY)
    assert str(excinfo.value) == message


def test_no_accounts(sqlite_url):
    plan = plan_backfill(make_engine(sqlite_url), "2026-11-01", "2026-11-10", **PLAN_ARGS, today=TODAY)
    assert plan.accounts == [] and plan.runs == 0
    assert "connect a bank first" in format_plan(plan)
    with pytest.raises(PlanError, match="no accounts are connected yet"):
        plan_backfill(make_engine(sqlite_url), "2026-11-01", "2026-11-10", ["a1"], **PLAN_ARGS, today=TODAY)


def test_cli_prints_table_and_exits_2_on_errors(sqlite_url, monkeypatch, capsys):
    _seed(make_engine(sqlite_url))
    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("BANK_PIPELINE_ENRICHER", "offline")
    assert main(["plan", "--from", "2026-01-01", "--to", "2026-01-31", "--account", "acur"]) == 0
    out = capsys.readouterr().out
    assert "Backfill 2026-01-01 .. 2026-01-31 (31 days) for 1 account" in out
    assert "$0.00" in out and "total" in out
    assert main(["plan", "--from", "2026-01-31", "--to", "2026-01-01"]) == 2
    assert "error: invalid date range" in capsys.readouterr().err
    assert main(["plan", "--from", "2026-01-01", "--to", "2026-01-02", "--account", "zzz"]) == 2
    assert "unknown account key zzz" in capsys.readouterr().err


def _many_accounts(engine, n: int) -> list[int]:
    now = utcnow()
    with engine.begin() as conn:
        conn_id = conn.execute(
            connections.insert().values(created_at=now, updated_at=now).returning(connections.c.id)
        ).scalar_one()
        conn.execute(accounts.insert(), [
            dict(account_key=f"a{i:04d}", identity=f"tl:{i}", connection_id=conn_id, kind="account",
                 provider_account_id=f"p-{i}", active=True, created_at=now, updated_at=now)
            for i in range(n)
        ])  # fmt: skip
        return list(conn.execute(sa.select(accounts.c.id).order_by(accounts.c.account_key)).scalars())


def test_daily_plan_counts_runs_calls_and_time_for_the_whole_population(sqlite_url, monkeypatch, capsys):
    from bank_pipeline.planning import format_daily_plan, plan_daily

    engine = make_engine(sqlite_url)
    ids = _many_accounts(engine, 120)
    with engine.begin() as conn:  # one account has spent 3 of its 4 unattended calls today
        conn.execute(api_call_budget.insert().values(account_id=ids[7], day=TODAY, unattended_calls=3))
    args = dict(fetch_concurrency=8, lookback_days=3, max_window_days=90, unattended_budget=4, today=TODAY,
                budget_day=TODAY, call_seconds=1.0, run_overhead_seconds=2.5, account_seconds=0.15)
    plan = plan_daily(engine, accounts_per_run=50, **args)
    assert (plan.first, plan.last) == (TODAY - dt.timedelta(days=4), TODAY - dt.timedelta(days=1))
    assert plan.runs == 3 and plan.bank_calls == 240 and plan.calls_per_account == {2: 120}
    assert plan.over_budget == ["a0007"]
    # One run per account: 120 × (2.5 + 0.15 + 2 calls × 1 s). Grouped: 2 runs of 50 accounts
    # (7 waves of 8 concurrent accounts) and one of 20 (3 waves).
    assert plan.seconds_per_account == pytest.approx(120 * 4.65)
    assert plan.seconds_grouped == pytest.approx(2 * (2.5 + 7.5 + 7 * 2) + (2.5 + 3.0 + 3 * 2))
    text = format_daily_plan(plan)
    assert "Daily import of 120 active accounts" in text and "a0007" in text
    table = [line.split() for line in text.splitlines()[1:4]]
    assert table == [["runs", "bank", "calls", "est.", "time"],
                     ["one", "run", "per", "account", "120", "240", "9m", "18s"],
                     ["grouped,", "50", "a", "run", "3", "240", "1m", "00s"]]
    assert plan_daily(engine, accounts_per_run=1, **args).runs == 120

    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", sqlite_url)
    assert main(["plan", "--daily", "--accounts-per-run", "40"]) == 0
    out = capsys.readouterr().out
    assert "grouped, 40 a run" in out and "120 active accounts" in out
    assert main(["plan"]) == 2
    assert "--daily" in capsys.readouterr().err
