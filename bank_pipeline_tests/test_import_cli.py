"""`bank-pipeline import` refuses ranges no partition exists for, in one line, before any work."""

from __future__ import annotations

import pytest

from bank_pipeline.cli import main
from bank_pipeline_tests.fixtures.clock import TODAY


@pytest.mark.parametrize(
    "date_from, date_to, message",
    [
        ("2099-01-01", "2099-01-02", "--to 2099-01-02 is in the future: the last day that can be imported is today, 2026-11-20"),
        (TODAY.isoformat(), "2026-11-21", "--to 2026-11-21 is in the future"),
        ("2019-12-31", "2020-01-05", "--from 2019-12-31 is before the first partition 2020-01-01 (BANK_PIPELINE_START_DATE)"),
        ("2026-02-01", "2026-01-01", "--from 2026-02-01 is after --to 2026-01-01"),
        ("2026-13-01", "2026-01-01", "argument --from: '2026-13-01' is not a date (YYYY-MM-DD)"),
    ],
)
@pytest.mark.date_sensitive
def test_import_refuses_ranges_without_partitions(sqlite_url, monkeypatch, capsys, date_from, date_to, message):
    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", sqlite_url)
    try:
        code = main(["import", "--from", date_from, "--to", date_to])
    except SystemExit as exited:  # a malformed date is refused by the argument parser
        code = exited.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("BANK_PIPELINE_TIMEZONE", "Mars/Olympus", "BANK_PIPELINE_TIMEZONE must be an IANA time zone"),
        ("BANK_PIPELINE_START_DATE", "2020-02-30", "BANK_PIPELINE_START_DATE must be a date YYYY-MM-DD"),
    ],
)
def test_a_bad_partition_setting_is_one_line(sqlite_url, monkeypatch, capsys, name, value, message):
    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv(name, value)
    assert main(["import", "--from", "2026-01-01", "--to", "2026-01-02"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1
