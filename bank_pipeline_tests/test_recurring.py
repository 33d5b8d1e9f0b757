"""Recurring payments: against the simulator's ground truth on a year of `multi-5` (recall ≥ 0.9,
every direct debit and standing order it lists found), quarterly / annual / weekly and variable
bills, the states (early → mature → ended) with next date and amount, a dismissed pattern staying
dismissed after re-runs (`bank-pipeline recurring list|dismiss`), the mandates fetched at connect
time as attended calls, and the `recurring_payments` asset in Dagster.

The year is generated once for the module and detected directly (no HTTP, no Dagster): the
detector is a pure function of the rows, so this is cheap.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa

from bank_pipeline.analytics.recurring import (
    Mandate,
    Row,
    detect_recurring,
    list_recurring,
    update_recurring,
)
from bank_pipeline.cli import main
from bank_pipeline.db import make_engine
from bank_pipeline.db.schema import bank_mandates, recurring_payments
from bank_pipeline.simulator import mandates as sim_mandates
from bank_pipeline.simulator.generator import generate_user
from bank_pipeline_tests.enrich_support import add_transactions, make_account
from bank_pipeline_tests.fixtures.clock import TODAY

YEAR_LAST = TODAY - dt.timedelta(days=1)
YEAR_FIRST = YEAR_LAST - dt.timedelta(days=364)


def _listed_mandates(data, key: str) -> list[Mandate]:
    """What the simulator's `/direct_debits` and `/standing_orders` list for account `key`."""
    out = []
    for dd in sim_mandates.direct_debits(42, data, key, TODAY, "now", key):
        out.append(Mandate(key, "direct_debit", dd["meta"]["provider_mandate_identification"], dd["name"]))
    for so in sim_mandates.standing_orders(data, key, TODAY, "now", key):
        out.append(Mandate(
            key, "standing_order", f"{so['payee']}|{so['reference']}", so["payee"], so["reference"],
            (Decimal(so["next_payment_amount"]),), dt.date.fromisoformat(so["next_payment_date"][:10]),
        ))
    return out


@pytest.fixture(scope="module")
def year():
    """(rows, truth: uid → recurring tag, mandates, patterns with mandates, patterns of the detector alone)."""
    data = generate_user(42, "multi-5", YEAR_FIRST - dt.timedelta(days=40), TODAY + dt.timedelta(days=10))
    rows, truth, mandates = [], {}, []
    for key, account in data.accounts.items():
        for t in account.booked(YEAR_FIRST.toordinal(), YEAR_LAST.toordinal(), TODAY.toordinal()):
            rows.append(Row(
                t.uid, key, dt.date.fromordinal(t.booking_day), Decimal(t.amount) / 100, account.spec.currency,
                t.description, t.tl_category, (t.meta or {}).get("provider_reference"),
            ))
            if t.recurring:
                truth[t.uid] = (key, t.recurring)
        if account.spec.kind == "account":
            mandates += _listed_mandates(data, key)
    return (rows, truth, mandates, detect_recurring(rows, mandates, asof=YEAR_LAST),
            detect_recurring(rows, asof=YEAR_LAST))


def _recall(patterns, truth) -> float:
    found = {r.id for p in patterns for r in p.rows}
    return len(found & truth.keys()) / len(truth)


def test_ground_truth_marks_the_listed_mandates_and_the_card_subscriptions(year):
    rows, truth, mandates, _, _ = year
    tags = defaultdict(int)
    for key, tag in truth.values():
        tags[(key, tag.split(":")[0])] += 1
    # Direct debits and standing orders on the current accounts, subscriptions on the cards.
    assert tags[("acct1", "dd")] >= 30 and tags[("acct1", "so")] == 12 and tags[("acct3", "card")] == 12
    assert {m.kind for m in mandates} == {"direct_debit", "standing_order"}
    assert len(mandates) == 4 * 4 + 4  # four current accounts: 4 direct debits and the rent each


def test_recall_at_least_90_percent_with_the_mandates_and_with_the_detector_alone(year):
    rows, truth, _, with_mandates, detector_only = year
    assert _recall(with_mandates, truth) >= 0.9
    assert _recall(detector_only, truth) >= 0.9
    # Everyday spending is not a subscription: no pattern at the coffee shops or supermarkets.
    everyday = {"COSTA", "PRET", "STARBUCKS", "NERO", "TESCO", "SAINSBURYS", "ALDI", "WAITROSE"}
    assert not [p.key for p in detector_only if p.payee in everyday and p.direction == "debit"]


def test_every_direct_debit_and_standing_order_listed_is_found_with_all_its_payments(year):
    _, truth, mandates, patterns, _ = year
    by_key = {p.key: p for p in patterns}
    for m in mandates:
        pattern = by_key[f"{m.account_id}|{m.kind}|{m.key}"]
        ids = {r.id for r in pattern.rows}
        tags = {truth.get(i) for i in ids}
        assert len(tags) == 1 and None not in tags, (m, tags)  # only that mandate's payments
        (tag,) = tags
        assert ids == {uid for uid, t in truth.items() if t == tag}  # and all of them
        assert pattern.cadence == "monthly" and pattern.state in ("early", "mature")
    # The standing order's next date is the bank's; the rent is on the 1st.
    rent = next(p for p in patterns if p.source == "standing_order")
    assert rent.next_date == dt.date(2026, 12, 1) and not rent.variable_amount


def test_variable_direct_debits_are_found_by_the_detector_alone(year):
    """Energy bills (dearer in winter) and mobile bills vary; the detector groups them by payee."""
    _, truth, _, _, detector_only = year
    for tag in ("dd:octopus", "dd:britishgas", "dd:ee"):
        ids = {uid for uid, (_, t) in truth.items() if t == tag}
        holding = [p for p in detector_only if ids & {r.id for r in p.rows}]
        assert holding and all(p.variable_amount and p.cadence == "monthly" for p in holding), tag
        assert sum(len(ids & {r.id for r in p.rows}) for p in holding) == len(ids)


def _rows(account, payee, days_amounts, category="PURCHASE"):
    return [Row(f"{payee}-{n}", account, day, Decimal(amount), "GBP", payee, category)
            for n, (day, amount) in enumerate(days_amounts)]


def test_quarterly_annual_weekly_and_a_variable_card_bill():
    d = dt.date
    water = _rows("a", "SOUTHERN WATER", [(d(2025, 11, 3), "-88.10"), (d(2026, 2, 2), "-91.40"),
                                           (d(2026, 5, 5), "-86.75"), (d(2026, 8, 3), "-95.20")])
    insurance = _rows("a", "ADMIRAL INSURANCE", [(d(2024, 11, 10), "-410.00"), (d(2025, 11, 12), "-436.00")])
    cleaner = _rows("a", "MRS MOP CLEANING", [(d(2026, 9, 11) + dt.timedelta(weeks=n), "-40.00") for n in range(9)])
    # A metered card bill: about £30 a month, never twice the same.
    energy = _rows("a", "BULB ENERGY CARD", [(d(2026, 4 + n, 20), f"-{28 + (n * 7) % 6}.{n}5") for n in range(7)])
    noise = _rows("a", "TESCO STORES", [(d(2026, 1, 1) + dt.timedelta(days=n * 11 % 300), f"-{12 + n}.00")
                                        for n in range(25)])
    patterns = {p.payee: p for p in detect_recurring(water + insurance + cleaner + energy + noise,
                                                     asof=d(2026, 11, 10))}
    assert set(patterns) == {"SOUTHERN", "ADMIRAL", "MRS", "BULB"}
    assert (patterns["SOUTHERN"].cadence, patterns["SOUTHERN"].occurrences) == ("quarterly", 4)
    assert patterns["SOUTHERN"].next_date == d(2026, 11, 3) and patterns["SOUTHERN"].variable_amount
    assert (patterns["ADMIRAL"].cadence, patterns["ADMIRAL"].next_date) == ("annual", d(2026, 11, 10))
    assert patterns["ADMIRAL"].state == "early"  # two years: the minimum for an annual payment
    assert (patterns["MRS"].cadence, patterns["MRS"].occurrences, patterns["MRS"].state) == ("weekly", 9, "mature")
    assert (patterns["BULB"].cadence, patterns["BULB"].occurrences) == ("monthly", 7)
    assert patterns["BULB"].variable_amount and Decimal("-34") < patterns["BULB"].next_amount < Decimal("-28")


def test_states_early_mature_ended_with_the_next_date_and_amount():
    d = dt.date
    gym = _rows("a", "PUREGYM", [(d(2026, m, 2), "-24.99") for m in range(1, 9)], "DIRECT_DEBIT")  # stopped
    new = _rows("a", "NOW TV", [(d(2026, m, 15), "-9.99") for m in (8, 9, 10)])
    long = _rows("a", "NETFLIX.COM", [(d(2026, m, 5), "-10.99") for m in range(3, 11)] + [(d(2026, 11, 6), "-12.99")])
    two = _rows("a", "PATREON", [(d(2026, 9, 1), "-5.00"), (d(2026, 10, 1), "-5.00")])  # too few for monthly
    patterns = {p.payee: p for p in detect_recurring(gym + new + long + two, asof=d(2026, 11, 18))}
    assert set(patterns) == {"PUREGYM", "NOW", "NETFLIX.COM"}
    assert (patterns["PUREGYM"].state, patterns["PUREGYM"].next_date) == ("ended", d(2026, 9, 2))
    assert (patterns["NOW"].state, patterns["NOW"].next_date, patterns["NOW"].next_amount) == (
        "early", d(2026, 11, 15), Decimal("-9.99"))
    netflix = patterns["NETFLIX.COM"]  # a price rise is the same subscription, at the new price
    assert (netflix.state, netflix.occurrences, netflix.next_date) == ("mature", 9, d(2026, 12, 5))
    assert netflix.next_amount == Decimal("-12.99") and netflix.variable_amount
    # An expected payment three days late is within the tolerance; four days late, it ended.
    assert detect_recurring(new, asof=d(2026, 11, 18))[0].state == "early"
    assert detect_recurring(new, asof=d(2026, 11, 19))[0].state == "ended"


# --- the database, the CLI and Dagster ------------------------------------------------------------


def _small_ledger(url: str) -> tuple[sa.Engine, int]:
    engine = make_engine(url)
    account = make_account(engine)
    d = dt.date
    add_transactions(engine, account, [(d(2026, m, 5), "NETFLIX.COM", "-10.99") for m in range(4, 12)])
    add_transactions(engine, account, [(d(2026, m, 12), "DD OCTOPUS ENERGY", f"-{60 + 9 * m}.40", None,
                                        "DIRECT_DEBIT") for m in range(5, 12)])
    add_transactions(engine, account, [(d(2026, m, 20), "KINDLE UNLTD", "-9.49") for m in (8, 9, 10, 11)])
    return engine, account


def _cli(url, monkeypatch, capsys, *argv) -> tuple[int, str, str]:
    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", url)
    try:
        code = main(["recurring", *map(str, argv)])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_dismissed_pattern_stays_dismissed_after_reruns(sqlite_url, monkeypatch, capsys):
    engine, account = _small_ledger(sqlite_url)
    with engine.begin() as conn:  # the bank listed the energy direct debit at connect time
        conn.execute(bank_mandates.insert().values(
            account_id=account, kind="direct_debit", mandate_key="OCT-77", name="OCTOPUS ENERGY", status="Active",
            payload={}, fetched_at=dt.datetime(2026, 4, 1, tzinfo=dt.timezone.utc)))
    stats = update_recurring(engine, run_id="run-1")
    assert (stats.patterns, stats.new, stats.by_source) == (3, 3, {"direct_debit": 1, "detected": 2})

    code, out, _ = _cli(sqlite_url, monkeypatch, capsys, "list")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 3
    kindle = next(line for line in lines if "KINDLE" in line)
    assert "monthly" in kindle and "out 9.49 GBP" in kindle and "next 2026-12-20" in kindle
    assert "[direct_debit, 7×" in next(line for line in lines if "OCTOPUS" in line)
    kindle_id = int(kindle.split("\t")[0])

    code, out, _ = _cli(sqlite_url, monkeypatch, capsys, "dismiss", kindle_id)
    assert code == 0 and "dismissed" in out
    add_transactions(engine, account, [(dt.date(2026, 12, 20), "KINDLE UNLTD", "-9.49")])  # it goes on
    for run in ("run-2", "run-3"):
        stats = update_recurring(engine, run_id=run)
        assert (stats.patterns, stats.new, stats.dismissed) == (2, 0, 1)
    code, out, _ = _cli(sqlite_url, monkeypatch, capsys, "list")
    assert "KINDLE" not in out and len(out.strip().splitlines()) == 2
    hidden = [r for r in list_recurring(engine, include_dismissed=True) if r.dismissed]
    assert [(r.id, r.occurrences) for r in hidden] == [(kindle_id, 5)]  # same id, still tracked
    code, out, _ = _cli(sqlite_url, monkeypatch, capsys, "list", "--all")
    assert f"{kindle_id}\t" in out and "dismissed" in out

    code, out, err = _cli(sqlite_url, monkeypatch, capsys, "dismiss", 999999)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "no recurring payment 999999; `bank-pipeline recurring list` shows the ids" in err
    engine.dispose()


def test_connect_time_fetch_stores_the_listed_mandates_as_attended_calls(sqlite_url, simulator, tmp_path):
    from bank_pipeline.connections.flow import connect
    from bank_pipeline.history import land_mandates
    from bank_pipeline_tests.fixtures.pipeline import settings_for

    settings = settings_for(sqlite_url, simulator, tmp_path / "home")
    result = connect(settings, simulator_user="alice", open_browser=False, timeout=30, out=lambda _: None)
    before = simulator.app_state.stats_snapshot()
    lines: list[str] = []
    stored = land_mandates(settings, result.connection_id, result.accounts, out=lines.append)
    after = simulator.app_state.stats_snapshot()
    current = next(a for a in result.accounts if a["account_type"] == "TRANSACTION")
    savings = next(a for a in result.accounts if a["account_type"] == "SAVINGS")
    # alice's current account: 7 direct debits, the rent and the savings standing orders.
    assert stored == {current["account_key"]: 9, savings["account_key"]: 0}
    assert any("7 direct debit(s), 2 standing order(s)" in line for line in lines)
    assert after["unattended"] == before["unattended"]  # no unattended call spent
    assert sum(after["attended"].values()) - sum(before["attended"].values()) == 4  # two accounts × two lists
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(bank_mandates.c.kind, bank_mandates.c.name, bank_mandates.c.next_payment_amount)
                            .where(bank_mandates.c.account_id == current["id"])).all()
    assert sorted(r.name for r in rows if r.kind == "direct_debit")[:2] == ["AVIVA INSURANCE", "BT GROUP PLC"]
    assert {(r.name, r.next_payment_amount) for r in rows if r.kind == "standing_order"} == {
        ("FOXTONS LTD", Decimal("1250.0000")), ("ALICE HARTLEY", Decimal("300.0000"))}
    # Fetched again (a new connection): replaced, not doubled.
    land_mandates(settings, result.connection_id, result.accounts, out=lambda _: None)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(bank_mandates)).scalar_one() == 9
    engine.dispose()


def test_the_recurring_payments_asset_runs_downstream_of_enrichment(sqlite_url, tmp_path):
    from bank_pipeline.definitions import defs
    from bank_pipeline.orchestration.analytics import analytics_automation
    from bank_pipeline.orchestration.analytics import recurring_payments as asset
    from bank_pipeline.orchestration.assets import enriched_transactions
    from bank_pipeline.orchestration.resources import AppDatabase

    engine, _ = _small_ledger(sqlite_url)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        # Resolved while an instance is open: Dagster reads its definitions state from the current one.
        graph = defs.resolve_asset_graph()
        assert enriched_transactions.key in graph.get(asset.key).parent_keys
        assert asset.key in analytics_automation.asset_selection.resolve(graph)
        result = dg.materialize([asset], instance=instance, resources={"database": AppDatabase(url=sqlite_url)})
    assert result.success
    metadata = result.asset_materializations_for_node("recurring_payments")[0].metadata
    assert metadata["patterns"].value == 3 and metadata["source_detected"].value == 3
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(recurring_payments)).scalar_one() == 3
    engine.dispose()
