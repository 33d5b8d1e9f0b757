"""One configured Dagster instance wherever the pipeline runs (bank_pipeline/orchestration/instance.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import pytest
import yaml

from bank_pipeline.orchestration.instance import (
    INSTANCE_FILE,
    WRITTEN_HEADER,
    instance_config,
    packaged_config,
    write_instance_config,
)
from bank_pipeline.orchestration.sqlite_storage import (
    TunedSqliteEventLogStorage,
    TunedSqliteRunStorage,
    TunedSqliteScheduleStorage,
)

# What Dagster prints on an unconfigured instance (telemetry notice, welcome banner, missing-file warning).
DAGSTER_NOTICES = ("Welcome to Dagster", "Telemetry", "telemetry", "No dagster instance configuration file")


@pytest.mark.date_sensitive
def test_connect_from_any_directory_runs_on_the_configured_instance(simulator, tmp_path):
    """`bank-pipeline connect` as an installed user runs it: in its own process, from a directory
    that is not the repository, with only BANK_PIPELINE_HOME set. Its runs go to the tuned
    instance in BANK_PIPELINE_HOME/dagster, with telemetry off and no Dagster banner in the output."""
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {name: value for name, value in os.environ.items() if name != "DAGSTER_HOME"}
    env.update(BANK_PIPELINE_HOME=str(home), TRUELAYER_AUTH_URL=simulator.auth_url, TRUELAYER_DATA_URL=simulator.data_url)
    env.pop("BANK_PIPELINE_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "bank_pipeline.cli", "connect", "--simulator-user", "alice", "--no-browser",
         "--redirect-port", "0", "--history-days", "5"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "3 of 3 run(s) succeeded" in output
    assert not [notice for notice in DAGSTER_NOTICES if notice in output], output
    assert list(elsewhere.iterdir()) == []  # nothing relative to the working directory

    dagster_home = home / "dagster"
    assert (dagster_home / INSTANCE_FILE).read_text().startswith(WRITTEN_HEADER)
    assert not (dagster_home / ".telemetry").exists()  # Dagster's telemetry id, made when it is on
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert isinstance(instance.event_log_storage, TunedSqliteEventLogStorage)
        assert isinstance(instance.run_storage, TunedSqliteRunStorage)
        assert isinstance(instance.schedule_storage, TunedSqliteScheduleStorage)
        assert not instance.telemetry_enabled
        runs = instance.get_runs(dg.RunsFilter(job_name="import_transactions", tags={"bank_pipeline/trigger": "connect"}))
        assert len(runs) == 3 and {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
    for run in runs:  # each run's event log where the packaged configuration puts it
        assert (dagster_home / "history" / "runs" / f"{run.run_id}.db").exists()


def test_the_written_configuration_is_the_packaged_one_under_the_instance_directory(tmp_path):
    written = write_instance_config(tmp_path)
    config = yaml.safe_load(written.read_text())
    assert config == instance_config(tmp_path)
    assert config["event_log_storage"]["config"]["base_dir"] == str(tmp_path / "history" / "runs")
    assert packaged_config()["event_log_storage"]["config"]["base_dir"] == "history/runs"  # relative, as shipped
    assert config["telemetry"] == {"enabled": False}


def test_an_operators_own_dagster_yaml_is_left_alone_and_a_written_one_follows_the_package(tmp_path):
    own = tmp_path / "own"
    own.mkdir()
    (own / INSTANCE_FILE).write_text("telemetry:\n  enabled: false\n")
    write_instance_config(own)
    assert (own / INSTANCE_FILE).read_text() == "telemetry:\n  enabled: false\n"

    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / INSTANCE_FILE).write_text(f"{WRITTEN_HEADER} (older).\nrun_storage: {{}}\n")  # e.g. an older package
    write_instance_config(moved)
    assert yaml.safe_load((moved / INSTANCE_FILE).read_text()) == instance_config(moved)
