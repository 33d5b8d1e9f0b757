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


def test_the_command_itself_prints_only_its_error_line(sqlite_url, tmp_path):
    """As a user runs it, in its own process: nothing but the error (no library notice or
    warning printed when the Dagster definitions are imported)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "BANK_PIPELINE_DATABASE_URL": sqlite_url, "BANK_PIPELINE_HOME": str(tmp_path / "home"),
           "DAGSTER_HOME": str(tmp_path / "dagster")}
    done = subprocess.run([sys.executable, "-m", "bank_pipeline.cli", "import", "--from", "2026-01-01", "--to",
                           "2026-01-02"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == "error: no connected accounts: run `bank-pipeline connect` first\n"


def test_a_budget_starved_import_is_one_error_line_per_failed_run(pipeline_factory, monkeypatch, capfd, tmp_path):
    """`bank-pipeline import` when the day's unattended calls are spent: exit 1, one `error:` line
    naming the account, the days and the reason (budget, deferred, when it resets), no traceback —
    the run's failure, and the ledger checks that follow it in the same process, print nothing else."""
    import datetime as dt

    import dagster as dg

    from bank_pipeline.db.schema import api_call_budget
    from bank_pipeline.orchestration.checks import CHECKS_AFTER_TAG
    from bank_pipeline.simulator import FaultConfig, SimulatorConfig

    pipe = pipeline_factory("alice", SimulatorConfig(seed=42, today=TODAY, faults=FaultConfig(unattended_limit=4)),
                            unattended_daily_budget=4, backfill_reserve=0)
    key = pipe.keys[0]
    account_id = next(a["id"] for a in pipe.accounts if a["account_key"] == key)
    with pipe.engine.begin() as conn:  # today's unattended calls are spent already
        conn.execute(api_call_budget.insert().values(account_id=account_id, day=TODAY, unattended_calls=4))
    settings = pipe.settings
    for name, value in {
        "BANK_PIPELINE_DATABASE_URL": settings.database_url, "TRUELAYER_AUTH_URL": settings.auth_url,
        "TRUELAYER_DATA_URL": settings.data_url, "BANK_PIPELINE_HOME": str(settings.home),
        "BANK_PIPELINE_FERNET_KEYS": ",".join(settings.fernet_keys), "BANK_PIPELINE_UNATTENDED_DAILY_BUDGET": "4",
        "BANK_PIPELINE_BACKFILL_RESERVE": "0", "DAGSTER_HOME": str(tmp_path / "cli-dagster"),
    }.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "cli-dagster").mkdir()
    (tmp_path / "cli-dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # as the repo's
    capfd.readouterr()

    code = main(["import", "--account", key, "--from", (TODAY - dt.timedelta(days=3)).isoformat(),
                 "--to", (TODAY - dt.timedelta(days=1)).isoformat()])

    out, err = capfd.readouterr()
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {key} "), err
    assert "budget" in lines[0] and "deferred" in lines[0] and "resets" in lines[0] and "Traceback" not in out + err
    assert "0 of 1 run(s) succeeded" in out
    with dg.DagsterInstance.get() as instance:  # the checks ran after the failed run, in the same instance
        [failed] = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
        assert len(instance.get_runs(dg.RunsFilter(tags={CHECKS_AFTER_TAG: failed.run_id}))) == 1
