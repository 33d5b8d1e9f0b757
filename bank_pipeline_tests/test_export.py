"""Exports of the enriched ledger: CSV and Parquet read back equal to the ledger, beancount passes
`bean-check` (the real one), and bad arguments are one-line errors with exit code 2.

One small SQLite ledger for the module (the backend does not matter to an export): an account
and a card, awkward descriptions (quotes, commas, a newline, a backslash, non-ASCII), a foreign
currency row, sub-penny amounts, an override, and a transaction not enriched yet.
"""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from bank_pipeline.analytics.export import COLUMN_NAMES, ledger_frame
from bank_pipeline.analytics.transfers import update_transfers
from bank_pipeline.cli import main
from bank_pipeline.db import make_engine, migrate
from bank_pipeline.db.schema import accounts, enrichments, transactions, transfers
from bank_pipeline.enrich import categorize, enrich_account_days
from bank_pipeline.enrich.offline import OfflineModel
from bank_pipeline_tests.enrich_support import add_transactions
from bank_pipeline_tests.ingest_support import make_account

FIRST, LAST = dt.date(2026, 9, 1), dt.date(2026, 9, 30)
USAGE_DOC = Path(__file__).resolve().parents[1] / "docs" / "usage.md"


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    """(database url, engine, ids) of the module's ledger."""
    url = f"sqlite:///{tmp_path_factory.mktemp('export') / 'app.db'}"
    engine = make_engine(url)
    migrate(engine)
    current = make_account(engine, display_name="Club Lloyds / Joint")
    card = make_account(engine, kind="card", display_name="Platinum Mastercard")
    day = FIRST
    rows = [
        (day, "TESCO STORES 3217 LONDON", "-23.45"),
        (day, 'CARD PAYMENT TO "THE CROWN", ISLINGTON', "-7.80"),
        (day + dt.timedelta(days=1), "SALARY ACME LTD\nBGC", "2450.00"),
        (day + dt.timedelta(days=2), r"AMAZON.CO.UK*AB12CD34 \ MKTPLACE", "-0.0150"),
        (day + dt.timedelta(days=3), "Café Nero — Zürich branch", "-3.20"),
        (day + dt.timedelta(days=4), "DIRECT DEBIT BRITISH GAS", "-61.00"),
        (day + dt.timedelta(days=6), "MOCK BANK CARD PAYMENT", "-250.00", None, "BILL_PAYMENT"),  # repays the card
        (LAST, "NETFLIX.COM", "-10.99"),
        (LAST + dt.timedelta(days=1), "OUTSIDE THE RANGE", "-1.00"),  # after --to: never exported
        (FIRST - dt.timedelta(days=1), "BEFORE THE RANGE", "-1.00"),
    ]
    ids = add_transactions(engine, current["id"], rows)
    ids += add_transactions(
        engine,
        card["id"],
        [(day + dt.timedelta(days=5), "UBER *TRIP HELP.UBER.COM", "-14.20"), (day + dt.timedelta(days=6), "PAYMENT RECEIVED - THANK YOU", "250.00")],
    )
    with engine.begin() as conn:
        conn.execute(
            transactions.update()
            .where(transactions.c.id == ids[4])
            .values(currency="EUR", provider_transaction_id="p-4", normalised_provider_transaction_id="n-4")
        )
    enrich_account_days(
        engine, {current["id"]: [FIRST + dt.timedelta(days=i) for i in range(31)], card["id"]: [FIRST + dt.timedelta(days=i) for i in range(30)]},
        OfflineModel(), run_id="export-test",
    )
    categorize(engine, ids[1], "dining", subcategory="pubs_bars", merchant="The Crown", learn=False)
    assert update_transfers(engine).new_pairs == 1  # the card repayment: both legs carry its id
    # Booked after the last enrichment: exported with empty category columns.
    ids += add_transactions(engine, card["id"], [(LAST, "NOT ENRICHED YET", "-2.00")])
    yield url, engine, ids
    engine.dispose()


def _expected(engine) -> dict[int, dict]:
    """The ledger straight from SQL: transaction id → the values an export must carry."""
    t, a, e = transactions.c, accounts.c, enrichments.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.id, a.account_key, a.display_name, a.kind, t.booking_date, t.amount, t.currency,
                      t.direction, t.description, e.category, e.subcategory, e.merchant, e.essential, e.source,
                      t.provider_transaction_id, transfers.c.id.label("transfer_id"))
            .join(accounts, a.id == t.account_id)
            .outerjoin(enrichments, e.transaction_id == t.id)
            .outerjoin(transfers, sa.or_(transfers.c.debit_transaction_id == t.id,
                                         transfers.c.credit_transaction_id == t.id))
            .where(t.booking_date.between(FIRST, LAST))
        ).all()
    return {
        r.id: {
            "account_key": r.account_key, "account_name": r.display_name, "account_kind": r.kind,
            "booking_date": r.booking_date, "amount": Decimal(r.amount).quantize(Decimal("0.0001")),
            "currency": r.currency, "direction": r.direction, "description": r.description,
            "category": r.category, "subcategory": r.subcategory, "merchant": r.merchant,
            "essential": None if r.essential is None else bool(r.essential), "category_source": r.source,
            "provider_transaction_id": r.provider_transaction_id, "transfer_id": r.transfer_id,
        }
        for r in rows
    }


def _cli(url: str, argv: list[str], monkeypatch, capsysbinary) -> tuple[int, bytes, str]:
    """`bank-pipeline ARGV` against the module's database: (exit code, stdout bytes, stderr)."""
    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", url)
    code = main(argv)
    out = capsysbinary.readouterr()
    return code, out.out, out.err.decode()


def test_the_fixture_ledger_covers_what_an_export_must_survive(ledger):
    _, engine, _ = ledger
    expected = _expected(engine)
    assert len(expected) == 11  # the two rows outside the range are not in it
    values = list(expected.values())
    assert any(v["category"] is None for v in values)
    assert any(v["category_source"] == "override" for v in values)
    assert any(v["currency"] == "EUR" for v in values)
    assert {v["account_kind"] for v in values} == {"account", "card"}
    assert sum(v["transfer_id"] is not None for v in values) == 2


def test_csv_reads_back_equal_to_the_ledger(ledger, tmp_path, monkeypatch, capsysbinary):
    url, engine, _ = ledger
    out = tmp_path / "ledger.csv"
    code, stdout, err = _cli(url, ["export", "--from", str(FIRST), "--to", str(LAST), "--format", "csv", "--out", str(out)], monkeypatch, capsysbinary)
    assert code == 0, err
    assert b"exported 11 transaction(s)" in stdout

    read = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert tuple(read.columns) == COLUMN_NAMES
    expected = _expected(engine)
    assert sorted(int(i) for i in read["transaction_id"]) == sorted(expected)
    for row in read.to_dict("records"):
        want = expected[int(row["transaction_id"])]
        got = {
            "account_key": row["account_key"], "account_name": row["account_name"],
            "account_kind": row["account_kind"], "booking_date": dt.date.fromisoformat(row["booking_date"]),
            "amount": Decimal(row["amount"]), "currency": row["currency"], "direction": row["direction"],
            "description": row["description"], "category": row["category"] or None,
            "subcategory": row["subcategory"] or None, "merchant": row["merchant"] or None,
            "essential": {"true": True, "false": False, "": None}[row["essential"]],
            "category_source": row["category_source"] or None,
            "provider_transaction_id": row["provider_transaction_id"] or None,
            "transfer_id": int(row["transfer_id"]) if row["transfer_id"] else None,
        }
        assert got == want
        assert row["booked_at"].endswith("Z")
    # Ordered by day; amounts never lose their sign or sub-penny digits.
    assert list(read["booking_date"]) == sorted(read["booking_date"])
    assert "-0.015" in set(read["amount"])

    # Without --out the same CSV goes to standard output.
    code, stdout, _ = _cli(url, ["export", "--from", str(FIRST), "--to", str(LAST), "--format", "csv"], monkeypatch, capsysbinary)
    assert code == 0 and stdout == out.read_bytes()


def test_parquet_reads_back_equal_to_the_ledger_with_exact_types(ledger, tmp_path, monkeypatch, capsysbinary):
    url, engine, _ = ledger
    out = tmp_path / "ledger.parquet"
    code, _, err = _cli(url, ["export", "--from", str(FIRST), "--to", str(LAST), "--format", "parquet", "--out", str(out)], monkeypatch, capsysbinary)
    assert code == 0, err

    schema = pq.read_schema(out)
    assert tuple(schema.names) == COLUMN_NAMES
    assert str(schema.field("amount").type) == "decimal128(18, 4)"
    assert str(schema.field("booking_date").type) == "date32[day]"
    assert str(schema.field("booked_at").type) == "timestamp[us, tz=UTC]"
    read = pd.read_parquet(out)
    expected = _expected(engine)
    assert len(read) == len(expected)
    for row in read.to_dict("records"):
        want = expected[int(row["transaction_id"])]
        got = {k: None if row[k] is None or (not isinstance(row[k], Decimal) and pd.isna(row[k])) else row[k]
               for k in want}
        got["essential"] = None if got["essential"] is None else bool(got["essential"])
        assert isinstance(got["amount"], Decimal)
        got["transfer_id"] = None if got["transfer_id"] is None else int(got["transfer_id"])
        assert got == want
    # And equal to the frame the export was made from, column for column.
    frame = ledger_frame(engine, FIRST, LAST)
    assert read["transaction_id"].tolist() == frame["transaction_id"].tolist()
    assert read["booked_at"].tolist() == frame["booked_at"].tolist()


def _bean_check() -> str:
    path = Path(sys.executable).with_name("bean-check")
    assert path.exists(), f"bean-check is not installed beside {sys.executable} (pip install -e '.[test]')"
    return str(path)


def test_beancount_passes_bean_check_and_balances_to_the_ledger(ledger, tmp_path, monkeypatch, capsysbinary):
    from beancount import loader
    from beancount.core import data

    url, engine, _ = ledger
    out = tmp_path / "ledger.beancount"
    code, _, err = _cli(url, ["export", "--from", str(FIRST), "--to", str(LAST), "--format", "beancount", "--out", str(out)], monkeypatch, capsysbinary)
    assert code == 0, err

    check = subprocess.run([_bean_check(), str(out)], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    entries, errors, _ = loader.load_file(str(out))
    assert errors == []
    txns = [e for e in entries if isinstance(e, data.Transaction)]
    expected = _expected(engine)
    assert sorted(int(t.meta["transaction_id"]) for t in txns) == sorted(expected)
    for txn in txns:
        want = expected[int(txn.meta["transaction_id"])]
        assert txn.date == want["booking_date"]
        assert txn.narration == " ".join(want["description"].split())  # quotes, backslash kept
        own = txn.postings[0]
        assert own.account.startswith("Liabilities:Card:" if want["account_kind"] == "card" else "Assets:Bank:")
        assert (own.units.number, own.units.currency) == (want["amount"], want["currency"])
        assert sum(p.units.number for p in txn.postings) == 0
        if want["category"] is None:
            assert txn.postings[1].account.endswith(":Uncategorised")
        if want["transfer_id"] is not None:  # both legs meet in the clearing account
            assert txn.postings[1].account == "Assets:Transfers"
            assert txn.meta["transfer_id"] == str(want["transfer_id"])
    override = next(t for t in txns if expected[int(t.meta["transaction_id"])]["category_source"] == "override")
    assert override.postings[1].account == "Expenses:Dining:PubsBars" and override.payee == "The Crown"


def test_the_docs_document_every_export_column():
    text = USAGE_DOC.read_text(encoding="utf-8")
    for name in COLUMN_NAMES:
        assert f"| `{name}` |" in text, f"docs/usage.md's export table lacks `{name}`"


def _one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--from", "2026-09-30", "--to", "2026-09-01", "--format", "csv"], "error: --to 2026-09-01 is before --from 2026-09-30"),
        (["--from", "2026-09-01", "--to", "2026-09-30", "--format", "xlsx"], "argument --format: invalid choice: 'xlsx'"),
        (["--from", "2026-9-1", "--to", "2026-09-30", "--format", "csv"], "argument --from: '2026-9-1' is not a date (YYYY-MM-DD)"),
        (["--from", "2026-09-01", "--to", "2026-09-30", "--format", "csv", "--out", "{missing}/x.csv"], "the folder"),
        (["--from", "2026-09-01", "--to", "2026-09-30", "--format", "csv", "--out", "{file}/x.csv"], "the folder"),
        (["--from", "2026-09-01", "--to", "2026-09-30", "--format", "parquet", "--out", "{dir}"], "it is a directory"),
    ],
    ids=["from-after-to", "unknown-format", "bad-date", "missing-folder", "folder-is-a-file", "out-is-a-directory"],
)
def test_bad_input_is_one_line_and_exit_code_2(ledger, tmp_path, monkeypatch, capsysbinary, args, message):
    url = ledger[0]
    (tmp_path / "a-file").write_text("x")
    places = {"missing": str(tmp_path / "nope"), "file": str(tmp_path / "a-file"), "dir": str(tmp_path)}
    argv = [a.format(**places) for a in args]
    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", url)
    try:
        code = main(["export", *argv])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    captured = capsysbinary.readouterr()
    assert code == 2
    assert captured.out == b""
    line = _one_line(captured.err.decode())
    assert line.startswith("error:") and message in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # nothing half-written


def test_an_unwritable_destination_leaves_no_partial_file(ledger, tmp_path, monkeypatch):
    from bank_pipeline.analytics import export

    _, engine, _ = ledger

    def refuse(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export.os, "replace", refuse)
    target = tmp_path / "ledger.csv"
    with pytest.raises(export.BankPipelineError, match=r"cannot write the export to .*: No space left on device"):
        export.export_ledger(engine, FIRST, LAST, "csv", target)
    assert list(tmp_path.iterdir()) == []


def test_csv_text_is_stable(ledger):
    """The header and an amount's text are an interface: spreadsheet users and scripts read them."""
    _, engine, _ = ledger
    buffer = io.StringIO()
    from bank_pipeline.analytics.export import write_csv

    write_csv(ledger_frame(engine, LAST, LAST), buffer)
    lines = buffer.getvalue().splitlines()
    assert lines[0] == ",".join(COLUMN_NAMES)
    assert any(",-10.99,GBP,debit,NETFLIX.COM," in line for line in lines[1:])
