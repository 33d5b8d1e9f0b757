"""What a user reads after an import is the ledger's now: the demo alone leaves transfers paired,
recurring payments listed and every imported month's spending computed (no daemon), and the
report equals a direct SQL aggregation of the ledger without transfer legs."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import pytest
import sqlalchemy as sa

from bank_pipeline.analytics import monthly
from bank_pipeline.analytics.transfers import update_transfers
from bank_pipeline.db import make_engine
from bank_pipeline.db.schema import (
    accounts,
    enrichments,
    monthly_spending,
    recurring_payments,
    transactions,
    transfers,
)
from bank_pipeline_tests.report_support import ReportPage
from bank_pipeline_tests.user_cli import environment


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`bank-pipeline demo --days 40` (two months) in a fresh home, as a new user runs it."""
    from bank_pipeline import clock
    from bank_pipeline.cli import main
    from bank_pipeline_tests.fixtures.clock import TODAY

    home = tmp_path_factory.mktemp("demo-home")
    offset = clock.offset_for(dt.datetime.combine(TODAY, dt.time(12), dt.timezone.utc))
    env = {"BANK_PIPELINE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
           "BANK_PIPELINE_DATABASE_URL": f"sqlite:///{home / 'ledger.db'}", clock.OFFSET_ENV: repr(offset)}
    (home / "dagster").mkdir()
    with environment(env):
        code = main(["demo", "--days", "40"])
    assert code == 0
    engine = make_engine(env["BANK_PIPELINE_DATABASE_URL"])
    yield env, engine
    engine.dispose()


def _cli(env, capsys, *argv) -> tuple[int, str, str]:
    from bank_pipeline.cli import main

    capsys.readouterr()
    with environment(env):
        code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def sql_month(engine, month: dt.date) -> dict[tuple[str, str, str], tuple[Decimal, Decimal]]:
    """{(account_key, category, currency): (income, spending)} of one month by plain SQL over the
    ledger, legs of transfer pairs left out."""
    t, e = transactions.c, enrichments.c
    leg = sa.exists().where(sa.or_(transfers.c.debit_transaction_id == t.id, transfers.c.credit_transaction_id == t.id))
    category = sa.func.coalesce(e.category, "unknown")
    query = (
        sa.select(accounts.c.account_key, category, t.currency,
                  sa.func.sum(sa.case((t.amount > 0, t.amount), else_=0)),
                  sa.func.sum(sa.case((t.amount < 0, -t.amount), else_=0)))
        .select_from(transactions.join(accounts, accounts.c.id == t.account_id)
                     .outerjoin(enrichments, e.transaction_id == t.id))
        .where(t.booking_date >= month, t.booking_date < monthly.next_month(month), ~leg, category != "transfers")
        .group_by(accounts.c.account_key, category, t.currency)
    )
    cent = Decimal("0.01")
    with engine.connect() as conn:
        return {(k, c, cur): (Decimal(str(i)).quantize(cent), Decimal(str(s)).quantize(cent))
                for k, c, cur, i, s in conn.execute(query)}


def _shown(out: str) -> dict[tuple[str, str, str], tuple[Decimal, Decimal]]:
    """The report's rows: {(account_key, category, currency): (income, spending)}, without the
    zero rows that show a category of the month before gone (0 transactions)."""
    shown = {}
    lines = out.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("Account ")), len(lines))
    for line in lines[header + 2:]:
        cells = line.split()
        if len(cells) >= 9 and cells[-8] != "categories" and cells[-1] != "0":
            # account label, category, currency, income, spending, net, Δ, Δ, txns
            shown[(cells[-9].strip("()"), cells[-8], cells[-7])] = (
                Decimal(cells[-6].replace(",", "")), Decimal(cells[-5].replace(",", "")))
    return shown


def test_after_the_demo_alone_transfers_recurring_and_monthly_spending_are_current(demo, capsys):
    env, engine = demo
    with engine.connect() as conn:
        pairs = conn.execute(sa.select(sa.func.count()).select_from(transfers)).scalar_one()
        patterns = conn.execute(sa.select(sa.func.count()).select_from(recurring_payments)).scalar_one()
        days = conn.execute(sa.select(sa.func.min(transactions.c.booking_date),
                                      sa.func.max(transactions.c.booking_date))).one()
        stored_months = set(conn.execute(sa.select(monthly_spending.c.month).distinct()).scalars())
    assert pairs > 0 and patterns > 0
    # Pairing again finds nothing new: the demo left them current.
    assert update_transfers(engine).new_pairs == 0
    first, last = (d if isinstance(d, dt.date) else dt.date.fromisoformat(d) for d in days)
    assert {monthly.parse_month(str(m)) for m in stored_months} == set(monthly.months_between(first, last))
    # What is stored for every month equals the ledger's figures now.
    for month in monthly.months_between(first, last):
        stored = monthly.read(engine, [month])
        now = monthly.compute(engine, {a: [month] for a in set(stored["account_id"])})
        assert [tuple(r) for r in stored[monthly.COLUMNS].itertuples(index=False)] == \
            [tuple(r) for r in now[monthly.COLUMNS].itertuples(index=False)]

    code, out, _ = _cli(env, capsys, "transfers", "list")
    assert code == 0 and "no transfers" not in out and out.count("\n") >= pairs
    code, out, _ = _cli(env, capsys, "recurring", "list")
    assert code == 0 and "no recurring payments" not in out


def test_report_of_every_month_equals_sql_over_the_ledger_without_transfer_legs(demo, capsys):
    env, engine = demo
    with engine.connect() as conn:
        first, last = conn.execute(sa.select(sa.func.min(transactions.c.booking_date),
                                             sa.func.max(transactions.c.booking_date))).one()
        card_repayment_legs = conn.execute(
            sa.select(sa.func.count()).select_from(transfers.join(transactions, transactions.c.id ==
                                                                  transfers.c.credit_transaction_id)
                                                   .join(accounts, accounts.c.id == transactions.c.account_id))
            .where(accounts.c.kind == "card")
        ).scalar_one()
    assert card_repayment_legs > 0  # the demo user repays a card from the current account
    for month in monthly.months_between(first, last):
        code, out, err = _cli(env, capsys, "report", "--month", f"{month:%Y-%m}")
        assert code == 0 and "--refresh" not in err, err
        expected = sql_month(engine, month)
        shown = _shown(out)
        assert shown == expected, month


@pytest.mark.slow
@pytest.mark.daemon
def test_with_the_daemon_the_report_and_its_html_equal_sql_over_the_ledger(
    sqlite_url, simulator_factory, dagster_services_factory, tmp_path, capsys
):
    """Imports through Dagster while the daemon's automation sensor runs: the sensor pairs the
    transfers (card repayments too); `report` of every month, with no --refresh, and its HTML page
    (with its as-of instant) equal SQL over the ledger without transfer legs."""
    import dagster as dg

    from bank_pipeline import clock
    from bank_pipeline.orchestration.partitions import sync_account_partitions
    from bank_pipeline.runner import run_imports
    from bank_pipeline.simulator import FaultConfig, SimulatorConfig
    from bank_pipeline_tests.dagster_graphql_client import DagsterGraphQL
    from bank_pipeline_tests.dagster_services import settings_env
    from bank_pipeline_tests.fixtures.clock import TODAY
    from bank_pipeline_tests.fixtures.pipeline import Pipeline, settings_for

    sim = simulator_factory(SimulatorConfig(seed=42, today=TODAY, history_days=60,
                                            faults=FaultConfig(unattended_limit=None)))
    pipe = Pipeline(settings_for(sqlite_url, sim, tmp_path / "home"), sim, None, "alice")
    services = dagster_services_factory(pipe.settings, setup=lambda instance: sync_account_partitions(instance, pipe.keys))
    last = TODAY - dt.timedelta(days=1)
    first = last - dt.timedelta(days=44)
    with services.instance() as instance:
        outcomes = run_imports(instance, pipe.settings, pipe.keys, first, last)  # no analytics: the daemon's
        assert all(o.success for o in outcomes)
        deadline = time.monotonic() + 420
        months = monthly.months_between(first, last)
        wanted = {f"{k}|{m:%Y-%m-%d}" for k in pipe.keys for m in months}
        while True:
            services.check_alive()
            done = {str(k) for k in instance.get_materialized_partitions(dg.AssetKey("monthly_spending"))}
            paired = instance.get_latest_materialization_event(dg.AssetKey("transfers"))
            if paired and wanted <= done:
                break
            assert time.monotonic() < deadline, f"automation did not run: {sorted(done)}\n{services.log_tails()}"
            time.sleep(2)
        DagsterGraphQL(services.url).wait_until_idle(timeout=300, settle=5, alive=services.check_alive)
        sensor_runs = {run.run_id for run in instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name":
                                                                                 "analytics_automation"}))}
    engine = pipe.engine
    with engine.connect() as conn:
        pair_runs = set(conn.execute(sa.select(transfers.c.run_id)).scalars())
        card_legs = conn.execute(
            sa.select(sa.func.count()).select_from(
                transfers.join(transactions, transactions.c.id == transfers.c.credit_transaction_id)
                .join(accounts, accounts.c.id == transactions.c.account_id))
            .where(accounts.c.kind == "card")
        ).scalar_one()
    assert card_legs > 0 and pair_runs and pair_runs <= sensor_runs  # paired by the daemon's sensor

    env = settings_env(pipe.settings)
    for month in months:
        before = clock.now()
        page = tmp_path / f"report-{month:%Y-%m}.html"
        code, out, err = _cli(env, capsys, "report", "--month", f"{month:%Y-%m}", "--html", str(page))
        assert code == 0 and "--refresh" not in err, err
        expected = sql_month(engine, month)
        assert _shown(out) == expected, month
        keys = {a["id"]: a["account_key"] for a in pipe.accounts}
        stored = {(keys[r["account_id"]], r["category"], r["currency"]):
                  (r["income"].quantize(Decimal("0.01")), r["spending"].quantize(Decimal("0.01")))
                  for r in monthly.read(engine, [month]).to_dict("records")}
        assert stored == expected, month  # the asset the daemon materialized agrees too
        parsed = ReportPage()
        parsed.feed(page.read_text(encoding="utf-8"))
        in_page = {(keys[int(r["data-account-id"])], r["data-category"], r["data-currency"]):
                   (Decimal(r["cells"][3].replace(",", "")), Decimal(r["cells"][4].replace(",", "")))
                   for r in parsed.rows if r["class"] == "row" and r["cells"][-1] != "0"}
        assert in_page == expected, month
        assert before <= dt.datetime.fromisoformat(parsed.asof) <= clock.now()
