"""Bad arguments are one-line errors, never database tracebacks, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from bank_pipeline.cli import database_error_line, main
from bank_pipeline.db import make_engine


@pytest.fixture
def cli_db(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", db_url)
    monkeypatch.setenv("BANK_PIPELINE_HOME", str(tmp_path / "home"))
    return db_url


def _one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.strip()


@pytest.mark.parametrize("transaction_id", ["99999999999999999999999", "9223372036854775808", "0", "-1", "12x"])
def test_categorize_with_an_id_out_of_range_is_one_line(cli_db, capsys, transaction_id):
    with pytest.raises(SystemExit) as info:
        main(["categorize", transaction_id, "groceries"])
    assert info.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("error: bank-pipeline categorize: argument transaction_id:")
    assert "is not an id (a whole number) from 1 to 9223372036854775807" in line


def test_categorize_with_the_largest_id_reaches_the_database_and_is_not_found(cli_db, capsys):
    assert main(["categorize", "9223372036854775807", "groceries"]) == 2
    assert _one_line(capsys.readouterr().err) == "error: no transaction with id 9223372036854775807"


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "--warn-days", "99999999999999"],
        ["connect", "--timeout", "nan"],
        ["connect", "--redirect-port", "70000"],
        ["webhook-server", "--max-age", "-5"],
        ["demo", "--days", "1e9"],
        # Was accepted, then an OverflowError after the user had authorised at the bank.
        ["connect", "--history-days", "99999999999999999999", "--no-browser", "--timeout", "1"],
        ["connect", "--history-days", "-1", "--no-browser", "--timeout", "1"],
    ],
    ids=["warn-days", "timeout-nan", "redirect-port", "max-age", "days", "history-days", "history-days-negative"],
)
def test_out_of_range_options_are_one_line(cli_db, capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"error: bank-pipeline {argv[0]}: argument {argv[1]}:") and "is not" in line


def test_unreachable_database_is_one_line_without_the_password(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", "postgresql://postgres:s3cret-pw@127.0.0.1:1/test")
    monkeypatch.setenv("BANK_PIPELINE_HOME", str(tmp_path / "home"))
    assert main(["status"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("error: the database refused the request (OperationalError):")
    assert "s3cret-pw" not in line


def test_connect_with_no_auth_server_reachable_fails_at_once_in_one_line(cli_db, capsys, monkeypatch):
    import socket
    import time

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("TRUELAYER_AUTH_URL", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    assert main(["connect", "--no-browser"]) == 2
    assert time.monotonic() - started < 30, "waited for a redirect that could not come"
    captured = capsys.readouterr()
    assert captured.out == ""  # no link printed for a consent page that cannot load
    line = _one_line(captured.err)
    assert line.startswith(f"error: the TrueLayer auth server at http://127.0.0.1:{port} is unreachable")


def test_database_error_line_has_no_sql_parameters_or_credentials(db_url):
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            conn.execute(
                sa.text("SELECT CAST(:v AS INTEGER) FROM no_such_table"), {"v": "postgresql://u:pw-123@h/db"}
            )
    except sa.exc.DBAPIError as exc:
        line = database_error_line(exc)
    finally:
        engine.dispose()
    assert line.startswith("the database refused the request (")
    assert "no_such_table" in line and "\n" not in line
    assert "pw-123" not in line and "SELECT" not in line  # neither the statement nor its parameters


@pytest.mark.parametrize(
    "argv", [["--month", "9999-12"], ["--month", "0001-01"], ["--month", "0005-06", "--months", "120"]],
    ids=["last-month", "first-month", "months-before-year-1"],
)
def test_report_month_out_of_the_date_range_is_one_line(cli_db, capsys, argv):
    """Was an OverflowError traceback: 9999-12 has no next month, 0001-01 no previous one."""
    with pytest.raises(SystemExit) as info:
        main(["report", *argv])
    assert info.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("error: bank-pipeline report: argument --month: not a month from 1900-01 to 9998-12:")


def test_report_months_at_the_ends_of_the_range_work(cli_db, capsys):
    assert main(["report", "--month", "9998-12"]) == 0
    assert main(["report", "--month", "1900-01", "--months", "120"]) == 0
    out, err = capsys.readouterr()
    assert out.count("no transactions in this month") == 2 and "Traceback" not in err


@pytest.mark.parametrize("name, value", [
    ("BANK_PIPELINE_HISTORY_DAYS", "99999999999999999999"),
    ("BANK_PIPELINE_HISTORY_DAYS", "-1"),
    ("BANK_PIPELINE_INITIAL_BACKFILL_DAYS", "36501"),
    ("BANK_PIPELINE_LOOKBACK_DAYS", "-3"),
    ("BANK_PIPELINE_MAX_WINDOW_DAYS", "0"),
    ("BANK_PIPELINE_UNATTENDED_DAILY_BUDGET", "-4"),
    ("BANK_PIPELINE_BACKFILL_RESERVE", "-1"),
    ("BANK_PIPELINE_ENRICH_BATCH_SIZE", "0"),
    ("BANK_PIPELINE_ENRICH_QUEUE_DELAY_HOURS", "-24"),
])
def test_a_numeric_setting_out_of_range_is_one_line_naming_it(cli_db, capsys, monkeypatch, name, value):
    """Before: BANK_PIPELINE_HISTORY_DAYS=99999999999999999999 failed with an OverflowError traceback
    once connect worked out the history window, after the user had approved access."""
    monkeypatch.setenv(name, value)
    assert main(["status"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"error: {name} must be a whole number from ") and line.endswith(f"got {value}"), line


def test_numeric_settings_at_the_ends_of_their_ranges_are_taken(monkeypatch):
    from bank_pipeline.config import MAX_HISTORY_DAYS, Settings

    monkeypatch.setenv("BANK_PIPELINE_HISTORY_DAYS", str(MAX_HISTORY_DAYS))
    monkeypatch.setenv("BANK_PIPELINE_LOOKBACK_DAYS", "0")
    monkeypatch.setenv("BANK_PIPELINE_UNATTENDED_DAILY_BUDGET", "0")
    settings = Settings.from_env()
    assert (settings.history_days, settings.lookback_days, settings.unattended_daily_budget) == (MAX_HISTORY_DAYS, 0, 0)


@pytest.mark.parametrize("value", ["nan", "1e400", "-inf", "1e12", "soon"])
def test_a_clock_offset_that_is_not_a_usable_number_is_one_line(cli_db, capsys, monkeypatch, value):
    """Before: `nan` and `1e400` (float() takes both) were a ValueError / OverflowError traceback at
    the first "now"."""
    monkeypatch.setenv("BANK_PIPELINE_CLOCK_OFFSET", value)
    assert main(["status"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("error: BANK_PIPELINE_CLOCK_OFFSET must be a number of seconds between ")
    assert line.endswith(f"got {value!r}")


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u:s3cret-pw@127.0.0.1/x",
        "oracle://u:s3cret-pw@127.0.0.1/x",
        "postgresql+asyncpg://u:s3cret-pw@127.0.0.1/x",
        "postgresql+pg8000://u:s3cret-pw@127.0.0.1/x",
        "garbage",
        "postgresql://u:s3cret-pw@127.0.0.1:port/x",
    ],
    ids=["mysql", "oracle", "asyncpg", "pg8000", "garbage", "bad-port"],
)
def test_an_unsupported_or_garbled_database_url_is_one_line(tmp_path, monkeypatch, capsys, url):
    """Before: a driver's ModuleNotFoundError or SQLAlchemy's ArgumentError, 27 traceback lines."""
    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", url)
    monkeypatch.setenv("BANK_PIPELINE_HOME", str(tmp_path / "home"))
    assert main(["status"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("error: the database URL ") and "s3cret-pw" not in line
    assert line.endswith("set BANK_PIPELINE_DATABASE_URL to sqlite:///PATH or postgresql://USER@HOST/DATABASE")


def test_a_sqlite_url_into_a_missing_folder_is_refused_not_created(tmp_path, monkeypatch, capsys):
    """Before: the folders and an empty database were created, and `status` said no bank was
    connected, as if the data were gone."""
    missing = tmp_path / "typo" / "dir"
    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", f"sqlite:///{missing / 'x.db'}")
    monkeypatch.setenv("BANK_PIPELINE_HOME", str(tmp_path / "home"))
    assert main(["status"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line == (f"error: the folder {str(missing)!r} of the SQLite database does not exist: create it, "
                    "or fix BANK_PIPELINE_DATABASE_URL")
    assert not (tmp_path / "typo").exists()
    # The default database lives in BANK_PIPELINE_HOME, which is still created on first use.
    monkeypatch.delenv("BANK_PIPELINE_DATABASE_URL")
    assert main(["status"]) == 0
    assert (tmp_path / "home" / "bank_pipeline.db").is_file()
