"""`monthly_spending`: figures equal to SQL over the ledger, months refreshed exactly when their
days are re-imported (Dagster's own planning), and the report read back from a real browser."""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import subprocess
from dataclasses import dataclass
from decimal import Decimal

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from bank_pipeline import clock
from bank_pipeline.analytics import monthly
from bank_pipeline.db import make_engine, migrate, utcnow
from bank_pipeline.db.schema import enrichments, monthly_spending, transactions, transfers
from bank_pipeline_tests.enrich_support import add_transactions, make_account
from bank_pipeline_tests.fixtures.clock import TODAY
from bank_pipeline_tests.fixtures.pipeline import Pipeline, settings_for
from bank_pipeline_tests.fixtures.simulator import default_simulator_config
from bank_pipeline_tests.report_support import ReportPage

SEP, OCT = dt.date(2026, 9, 1), dt.date(2026, 10, 1)
KEY = ("account_id", "month", "category", "currency")


# --- the figures -----------------------------------------------------------------------------


def _ledger(rows):
    frame = pd.DataFrame(rows, columns=["account_id", "month", "category", "currency", "amount"])
    frame["units"] = [int(Decimal(a) * 10_000) for a in frame["amount"]]
    return frame.drop(columns="amount")


def test_income_and_spending_leave_out_transfers_and_show_the_change():
    ledger = _ledger([
        (1, SEP, "groceries", "GBP", "-40.00"), (1, SEP, "dining", "GBP", "-12.50"),
        (1, OCT, "groceries", "GBP", "-55.25"), (1, OCT, "groceries", "GBP", "5.25"),  # a refund at the till
        (1, OCT, "income", "GBP", "2000.00"), (1, OCT, "transfers", "GBP", "-500.00"),
        (2, OCT, "transfers", "GBP", "500.00"), (2, OCT, "groceries", "GBP", "-1.00"),
    ])
    figures = monthly.aggregate(ledger)
    assert "transfers" not in set(figures["category"])
    oct_groceries = figures[(figures.account_id == 1) & (figures.month == OCT) & (figures.category == "groceries")].iloc[0]
    assert (oct_groceries.income, oct_groceries.spending, oct_groceries.net) == (Decimal("5.25"), Decimal("55.25"), Decimal("-50"))
    assert oct_groceries.transactions == 2

    changed = monthly.with_changes(figures[figures.month == OCT], figures[figures.month == SEP])
    by_key = {(r.account_id, r.category): r for r in changed.itertuples()}
    assert by_key[(1, "groceries")].spending_change == Decimal("15.25")
    # Dining stopped: it shows with zeros and its whole drop.
    assert by_key[(1, "dining")].spending == 0 and by_key[(1, "dining")].spending_change == Decimal("-12.50")
    assert by_key[(1, "income")].net_change == Decimal("2000")
    # Account 2 had nothing in September: no change to speak of.
    assert by_key[(2, "groceries")].spending_change is None


def _month_expr(engine, column):
    if engine.dialect.name == "sqlite":
        return sa.func.date(column, "start of month")
    return sa.cast(sa.func.date_trunc("month", column), sa.Date)


def sql_aggregation(engine, months: list[dt.date]) -> dict[tuple, tuple]:
    """The same figures by plain SQL over transactions + enrichments, for comparison."""
    month = _month_expr(engine, transactions.c.booking_date).label("month")
    category = sa.func.coalesce(enrichments.c.category, "unknown").label("category")
    query = (
        sa.select(
            transactions.c.account_id, month, category, transactions.c.currency,
            sa.func.sum(sa.case((transactions.c.amount > 0, transactions.c.amount), else_=0)),
            sa.func.sum(sa.case((transactions.c.amount < 0, -transactions.c.amount), else_=0)),
            sa.func.sum(transactions.c.amount),
            sa.func.count(),
        )
        .select_from(transactions.outerjoin(enrichments, enrichments.c.transaction_id == transactions.c.id))
        .where(category != "transfers", ~sa.exists().where(sa.or_(
                   transfers.c.debit_transaction_id == transactions.c.id,
                   transfers.c.credit_transaction_id == transactions.c.id)),
               transactions.c.booking_date >= min(months),
               transactions.c.booking_date < monthly.next_month(max(months)))
        .group_by(transactions.c.account_id, month, category, transactions.c.currency)
    )
    cent = Decimal("0.0001")
    with engine.connect() as conn:
        return {
            (r[0], r[1] if isinstance(r[1], dt.date) else dt.date.fromisoformat(r[1]), r[2], r[3]):
            tuple(Decimal(str(v)).quantize(cent) for v in r[4:7]) + (r[7],)
            for r in conn.execute(query)
        }


def stored(engine, months) -> dict[tuple, tuple]:
    frame = monthly.read(engine, months)
    return {tuple(r[k] for k in KEY): (r["income"], r["spending"], r["net"], r["transactions"])
            for r in frame.to_dict("records")}


def test_stored_figures_equal_sql_over_the_ledger(engine):
    """Both backends: what `refresh` stores equals SQL's own sums, and a refresh replaces a month."""
    a, b = make_account(engine), make_account(engine)
    ids = add_transactions(engine, a, [
        (dt.date(2026, 9, 30), "TESCO", "-10.10"), (dt.date(2026, 10, 1), "TESCO", "-20.20"),
        (dt.date(2026, 10, 2), "ACME PAYROLL", "1500.00"), (dt.date(2026, 10, 31), "TO SAVINGS", "-300.00"),
        (dt.date(2026, 10, 31), "MYSTERY", "-1.2345"), (dt.date(2026, 11, 1), "TESCO", "-5.00"),
    ])
    (incoming,) = add_transactions(engine, b, [(dt.date(2026, 10, 31), "FROM CURRENT", "300.00")])
    with engine.begin() as conn:
        labels = ["groceries", "groceries", "income", "transfers", None]
        conn.execute(enrichments.insert(), [
            {"transaction_id": t, "category": c, "source": "rule", "updated_at": utcnow()}
            for t, c in zip(ids, labels, strict=False) if c
        ])
        conn.execute(enrichments.insert().values(transaction_id=incoming, category="transfers", source="rule",
                                                 updated_at=utcnow()))
    months = [SEP, OCT]
    monthly.refresh(engine, {a: months, b: months})
    expected = sql_aggregation(engine, months)
    assert stored(engine, months) == expected
    assert expected[(a, OCT, "unknown", "GBP")][1] == Decimal("1.2345")  # unenriched counts, as unknown
    assert all(key[2] != "transfers" for key in expected) and not any(key[0] == b for key in expected)

    add_transactions(engine, a, [(dt.date(2026, 10, 15), "LATE POSTING", "-7.00")])
    monthly.refresh(engine, {a: [OCT]})
    assert stored(engine, months) == sql_aggregation(engine, months)


# --- end to end: the simulator, Dagster, the CLI and a browser -------------------------------------


@dataclass
class World:
    pipe: Pipeline
    key: str  # the current account, the one imported
    defs: dg.Definitions
    instance: dg.DagsterInstance
    cursor: object
    first_request: set[str]


def _evaluate(world_defs, instance, cursor=None):
    """One tick of the automation sensor: the monthly_spending partitions it would request."""
    result = dg.evaluate_automation_conditions(defs=world_defs, instance=instance, cursor=cursor)
    return result, {str(k) for k in result.get_requested_partitions(dg.AssetKey("monthly_spending"))}


def _materialize(world_defs, instance, partition_keys: set[str]) -> None:
    """Run what the automation condition requested, one run per account (its months as a range)."""
    from bank_pipeline.orchestration.partitions import months_by_account

    job = world_defs.resolve_implicit_global_asset_job_def()
    for account, months in months_by_account(partition_keys).items():
        assert months == monthly.months_between(months[0], months[-1])  # contiguous: one range
        tags = {"dagster/asset_partition_range_start": f"{account}|{months[0]}",
                "dagster/asset_partition_range_end": f"{account}|{months[-1]}"}
        result = job.execute_in_process(instance=instance, tags=tags, asset_selection=[dg.AssetKey("monthly_spending")])
        assert result.success


def _materialized_partitions(instance) -> list[str]:
    records = instance.fetch_materializations(dg.AssetKey("monthly_spending"), limit=1000).records
    return sorted(r.partition_key for r in records)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """alice's current account imported from 29 September to 31 October 2026 (sqlite), then
    monthly_spending materialized as its automation condition asks. One account: Dagster's
    per-partition bookkeeping, not the data, is what costs here."""
    from bank_pipeline.orchestration.analytics import analytics_assets
    from bank_pipeline.orchestration.assets import transaction_assets
    from bank_pipeline.orchestration.resources import default_resources
    from bank_pipeline.simulator import run_in_thread

    tmp = tmp_path_factory.mktemp("monthly")
    with pytest.MonkeyPatch.context() as mp, contextlib.ExitStack() as stack:
        mp.setenv(clock.OFFSET_ENV, repr(clock.offset_for(dt.datetime.combine(TODAY, dt.time(12), dt.timezone.utc))))
        url = f"sqlite:///{tmp / 'app.db'}"
        migrate(make_engine(url))
        sim = stack.enter_context(run_in_thread(default_simulator_config()))
        (tmp / "dagster").mkdir()
        instance = stack.enter_context(dg.instance_for_test(temp_dir=str(tmp / "dagster")))
        settings = settings_for(url, sim, tmp / "home")
        pipe = Pipeline(settings, sim, instance, "alice")
        key = next(a["account_key"] for a in pipe.accounts if a["account_type"] == "TRANSACTION")
        world_defs = dg.Definitions(assets=[*transaction_assets, *analytics_assets], resources=default_resources(settings))
        result, nothing = _evaluate(world_defs, instance)
        assert nothing == set()
        pipe.run(dt.date(2026, 9, 29), dt.date(2026, 10, 31), keys=[key])
        result, requested = _evaluate(world_defs, instance, result.cursor)
        _materialize(world_defs, instance, requested)
        yield World(pipe, key, world_defs, instance, result.cursor, requested)


def test_import_across_a_month_end_materializes_both_months(world):
    expected = {f"{world.key}|{SEP}", f"{world.key}|{OCT}"}
    assert world.first_request == expected
    assert _materialized_partitions(world.instance) == sorted(expected)
    # Each partition's materialization carries its month's table, as markdown for the UI.
    records = world.instance.fetch_materializations(dg.AssetKey("monthly_spending"), limit=10).records
    tables = {r.partition_key: r.asset_materialization.metadata["table"] for r in records}
    assert all(isinstance(t, dg.MarkdownMetadataValue) for t in tables.values())
    october = monthly.month_with_changes(world.pipe.engine, OCT)
    groceries = october[october.category == "groceries"].iloc[0]
    assert f"| groceries | GBP | 0.00 | {groceries.spending.quantize(Decimal('0.01')):,.2f} |" in \
        tables[f"{world.key}|{OCT}"].value


def test_materialized_monthly_spending_equals_sql_over_the_imported_ledger(world):
    engine = world.pipe.engine
    figures = stored(engine, [SEP, OCT])
    assert figures == sql_aggregation(engine, [SEP, OCT])
    assert len({key[2] for key in figures if key[1] == OCT}) >= 5  # a real month of a real ledger
    with engine.connect() as conn:
        transfers = conn.execute(
            sa.select(sa.func.count()).select_from(enrichments).where(enrichments.c.category == "transfers")
        ).scalar_one()
    assert transfers > 0  # the simulator's own-account transfers are in the ledger, and left out


def test_ten_days_reimported_rematerialise_exactly_their_month(world):
    """No sensor tick between the month's run and the re-import (the cursor is the one from before
    the month's run): the days must still count."""
    before = _materialized_partitions(world.instance)
    world.pipe.run(dt.date(2026, 10, 5), dt.date(2026, 10, 14), keys=[world.key])
    result, requested = _evaluate(world.defs, world.instance, world.cursor)
    assert requested == {f"{world.key}|{OCT}"}
    _materialize(world.defs, world.instance, requested)
    after = _materialized_partitions(world.instance)
    assert sorted(set(after) - set(before)) == [] and len(after) == len(before) + 1
    assert after.count(f"{world.key}|{OCT}") == before.count(f"{world.key}|{OCT}") + 1
    assert _evaluate(world.defs, world.instance, result.cursor)[1] == set()  # handled: nothing more


def _cli(monkeypatch, capsys, url, *argv) -> tuple[int, str, str]:
    from bank_pipeline.cli import main

    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", url)
    code = main(["report", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _expected_month(engine, month) -> pd.DataFrame:
    return monthly.live_month_with_changes(engine, month)


def test_report_prints_the_month(world, monkeypatch, capsys):
    engine = world.pipe.engine
    code, out, err = _cli(monkeypatch, capsys, world.pipe.settings.database_url, "--month", "2026-10")
    assert code == 0, err
    frame = _expected_month(engine, OCT)
    lines = out.splitlines()
    assert lines[0].startswith("Monthly spending 2026-10")
    for row in frame.to_dict("records"):
        line = next(x for x in lines if f" {row['category']} " in x and row["account_key"] in x)
        assert f"{row['spending'].quantize(Decimal('0.01')):,.2f}" in line and f"{row['net'].quantize(Decimal('0.01')):,.2f}" in line


def test_the_report_reads_the_ledger_even_when_the_asset_never_ran(world, monkeypatch, capsys):
    code, out, err = _cli(monkeypatch, capsys, world.pipe.settings.database_url, "--month", "2026-08")
    assert code == 0 and "no transactions in this month" in out  # never imported: an empty month
    with world.pipe.engine.begin() as conn:
        saved = [dict(r) for r in conn.execute(sa.select(monthly_spending).where(monthly_spending.c.month == SEP)).mappings()]
        conn.execute(monthly_spending.delete().where(monthly_spending.c.month == SEP))
    try:
        code, out, err = _cli(monkeypatch, capsys, world.pipe.settings.database_url, "--month", "2026-09")
        assert code == 0 and "--refresh" not in err, err
        expected = sql_aggregation(world.pipe.engine, [SEP])
        assert expected
        for (_account, _month, category, _currency), (_income, spending, _net, _n) in expected.items():
            assert any(f" {category} " in line and f"{spending.quantize(Decimal('0.01')):,.2f}" in line
                       for line in out.splitlines())
    finally:
        with world.pipe.engine.begin() as conn:
            conn.execute(monthly_spending.insert(), saved)


def test_html_report_rendered_by_chromium_shows_the_figures(world, monkeypatch, capsys, tmp_path):
    browser = shutil.which("chromium")
    assert browser, "chromium is not installed: `apt-get install -y chromium` (Debian's headless browser)"
    page = tmp_path / "report.html"
    code, out, err = _cli(monkeypatch, capsys, world.pipe.settings.database_url,
                          "--month", "2026-10", "--months", "2", "--html", str(page))
    assert code == 0, err
    source = page.read_text()
    assert "url(" not in source and "@import" not in source  # self-contained: nothing to fetch
    rendered = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    dom = ReportPage()
    dom.feed(rendered)
    assert dom.external == []

    engine = world.pipe.engine
    frame = _expected_month(engine, OCT)
    expected_rows = {(str(r["account_id"]), r["category"], r["currency"]):
                     [f"{r[k].quantize(Decimal('0.01')):,.2f}" for k in ("income", "spending", "net")]
                     for r in frame.to_dict("records")}
    shown = {(r["data-account-id"], r["data-category"], r["data-currency"]): r["cells"][3:6]
             for r in dom.rows if r["class"] == "row"}
    assert shown == expected_rows

    spending: dict[tuple, Decimal] = {}
    for (_account, month, category, currency), (_income, spent, _net, _n) in sql_aggregation(engine, [SEP, OCT]).items():
        key = (f"{month:%Y-%m}", category, currency)
        spending[key] = spending.get(key, Decimal(0)) + spent
    expected_bars = {k: v.quantize(Decimal("0.01")) for k, v in spending.items() if v}
    drawn = {(s["data-month"], s["data-category"], s["currency"]): Decimal(s["data-spending"]) for s in dom.segments}
    # The largest categories by name, each its own colour; the rest summed as one grey "other".
    named = {k: v for k, v in drawn.items() if k[1] != "other categories"}
    assert named == {k: expected_bars[k] for k in named}
    folded = {k: v for k, v in expected_bars.items() if (k[0], k[1], k[2]) not in named}
    for (month, category, currency), value in drawn.items():
        if category == "other categories":
            assert value == sum(v for (m, _, c), v in folded.items() if (m, c) == (month, currency))
    assert sum(drawn.values()) == sum(expected_bars.values())
    fills = {}
    for s in dom.segments:
        fills.setdefault((s["currency"], s["data-category"]), set()).add(s["fill"])
    assert all(len(f) == 1 for f in fills.values())
    for currency in {c for c, _ in fills}:
        colours = [next(iter(f)) for (c, _), f in fills.items() if c == currency]
        assert len(colours) == len(set(colours))  # no two categories of a chart share a colour
    # Drawn to scale: each segment's height is its share of its chart's tallest month.
    for currency in {c for _, _, c in drawn}:
        tallest = max(sum(v for (m, _, c), v in drawn.items() if (m, c) == (month, currency))
                      for month in ("2026-09", "2026-10"))
        for s in (s for s in dom.segments if s["currency"] == currency):
            assert float(s["height"]) == pytest.approx(float(Decimal(s["data-spending"]) / tallest) * 240, abs=0.01)


def test_report_to_an_unwritable_file_is_one_line(sqlite_url, monkeypatch, capsys, tmp_path):
    code, _, err = _cli(monkeypatch, capsys, sqlite_url, "--month", "2026-10", "--html", str(tmp_path / "no" / "r.html"))
    assert code == 2 and err.count("\n") == 1 and "cannot write" in err
