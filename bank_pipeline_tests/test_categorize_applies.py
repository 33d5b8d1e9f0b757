"""A correction applies at once: `categorize` relabels every existing row its learned rule now
decides, never a row with its own override nor a transfer leg, and says how many it changed."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from bank_pipeline.analytics import monthly
from bank_pipeline.analytics.transfers import link_transfer
from bank_pipeline.db.schema import enrichments
from bank_pipeline.enrich import categorize, enrich_account_days
from bank_pipeline.enrich.offline import OfflineModel
from bank_pipeline_tests.enrich_support import add_transactions, make_account
from bank_pipeline_tests.fixtures.clock import TODAY


def _labels(engine) -> dict[int, tuple[str, str]]:
    with engine.connect() as conn:
        return {r.transaction_id: (r.category, r.source) for r in conn.execute(
            sa.select(enrichments.c.transaction_id, enrichments.c.category, enrichments.c.source))}


def test_categorize_relabels_the_rows_its_rule_covers_at_once_and_no_override(engine, monkeypatch, capsys):
    current, savings = make_account(engine), make_account(engine)
    days = [TODAY - dt.timedelta(days=n) for n in range(1, 9)]
    pret = add_transactions(engine, current, [
        (days[0], "PRET A MANGER 123 LONDON", "-4.50"), (days[1], "PRET A MANGER 456 LONDON", "-5.10"),
        (days[2], "PRET A MANGER 123 LONDON", "-3.95"), (days[3], "PRET A MANGER 789 LONDON", "-6.20"),
        (days[4], "PRET A MANGER 123 LONDON", "-4.50"), (days[5], "PRET A MANGER 123 LONDON", "-20.00"),
    ])
    others = add_transactions(engine, current, [(days[6], "TESCO STORES 3217", "-23.45"),
                                                (days[7], "PRET A MANGER 123 LONDON REFUND", "4.50")])
    (incoming,) = add_transactions(engine, savings, [(days[5], "FROM CURRENT", "20.00")])
    enrich_account_days(engine, {current: days, savings: days}, OfflineModel(), run_id="before")
    before = _labels(engine)
    assert {before[i][0] for i in pret} == {"dining"}
    # The user's word on one row (no rule), and one row that is a leg of a transfer.
    categorize(engine, pret[3], "entertainment", learn=False)
    link_transfer(engine, pret[5], incoming)
    before = _labels(engine)

    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", str(engine.url.render_as_string(hide_password=False)))
    from bank_pipeline.cli import main

    assert main(["categorize", str(pret[0]), "groceries"]) == 0
    out = capsys.readouterr().out
    after = _labels(engine)
    changed = {i for i in after if after[i] != before.get(i)}
    # Rows 1, 2 and 4 share the rule's description; 3 has an override, 5 is a transfer leg.
    assert changed == {pret[0], pret[1], pret[2], pret[4]}
    assert after[pret[1]] == after[pret[2]] == after[pret[4]] == ("groceries", "rule")
    assert after[pret[3]] == ("entertainment", "override") and after[pret[5]][0] == "transfers"
    assert after[others[0]] == before[others[0]] and after[others[1]] == before[others[1]]  # other payee; a credit
    assert "relabelled 3 other transaction(s) now" in out
    # The stored monthly_spending of the months touched is the ledger's now (groceries, not dining).
    months = sorted({monthly.month_start(d) for d in days})
    stored = monthly.read(engine, months, [current])
    now = monthly.compute(engine, {current: months})
    assert list(stored[monthly.COLUMNS].itertuples(index=False)) == list(now[monthly.COLUMNS].itertuples(index=False))
    assert "groceries" in set(stored["category"])

    # Said again: nothing left to change, and it says so.
    assert main(["categorize", str(pret[0]), "groceries"]) == 0
    assert "relabelled 0 other transaction(s) now (3 covered by the rule" in capsys.readouterr().out


def test_categorize_relabels_at_once_what_the_retrained_classifier_now_covers(engine, monkeypatch, capsys):
    """A payee the knowledge base does not know, corrected on two descriptions: a third, already in
    the ledger, follows at once through the learned classifier (not a rule: it differs)."""
    from bank_pipeline.cli import main
    from bank_pipeline_tests.test_enrich_classifier import KNOWN

    account = make_account(engine)
    day = TODAY - dt.timedelta(days=2)
    rows = [(day, f"CARD PAYMENT TO {d}", -5 - i) for i, d in enumerate(KNOWN)]
    rows += [(day, "CARD PAYMENT TO QZX KRELLWORKS HARBOUR", -12), (day, "CARD PAYMENT TO QZX KRELLWORKS MILLS", -9),
             (day, "CARD PAYMENT TO QZX KRELLWORKS DEPOT", -20)]
    ids = add_transactions(engine, account, rows)
    harbour, mills, depot = ids[-3:]
    enrich_account_days(engine, {account: [day]}, OfflineModel(), run_id="before")
    assert _labels(engine)[depot][0] != "pets"
    categorize(engine, mills, "pets", subcategory="pet_supplies")

    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", str(engine.url.render_as_string(hide_password=False)))
    assert main(["categorize", str(harbour), "pets", "--subcategory", "pet_supplies"]) == 0
    out = capsys.readouterr().out
    labels = _labels(engine)
    assert labels[depot] == ("pets", "classifier")
    assert "the classifier learned from your labels relabelled 1 more transaction(s)" in out
    assert all(labels[i][0] != "pets" for i in ids[:-3])  # nothing else moved
