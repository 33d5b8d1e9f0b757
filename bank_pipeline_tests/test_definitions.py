"""The one `Definitions` object loads: what `dg dev -w workspace.yaml` (make ui), the webserver and the daemon load."""

import dagster as dg
import pytest


@pytest.fixture(autouse=True)
def live_instance():
    """Resolving definitions consults the current instance's stored state (Dagster's
    DefsStateStorage): give it a live one, as `dg dev` and the runner have."""
    with dg.instance_for_test() as instance:
        yield instance


def test_the_code_locations_definitions_load_and_validate():
    from bank_pipeline.definitions import defs

    dg.Definitions.validate_loadable(defs)  # keys, names, asset jobs, resources, partition mappings
    repository = defs.get_repository_def()
    assert {job.name for job in repository.get_all_jobs()} >= {"import_transactions", "ledger_checks"}
    assert {s.name for s in repository.schedule_defs} == {"daily_import_schedule"}
    assert {s.name for s in repository.sensor_defs} == {
        "webhook_events_sensor",
        "account_partitions_sensor",
        "record_failures_sensor",
        "ledger_checks_after_failure_sensor",
        "analytics_automation",
        "alert_on_run_failure",
        "alert_on_failed_checks",
        "alerts_sensor",
    }
    assert set(defs.resources) == {"database", "truelayer", "enrichment_model", "alert_channels"}


def test_the_runners_import_job_is_the_definitions_job_with_other_resources():
    from bank_pipeline.config import Settings
    from bank_pipeline.definitions import defs
    from bank_pipeline.orchestration.jobs import IMPORT_JOB_NAME
    from bank_pipeline.runner import import_job

    settings = Settings.from_env()
    job = import_job(settings)
    defined = defs.resolve_job_def(IMPORT_JOB_NAME)
    assert job.name == defined.name
    assert set(job.asset_layer.executable_asset_keys) == set(defined.asset_layer.executable_asset_keys)
    assert set(job.asset_layer.asset_graph.asset_check_keys) == set(defined.asset_layer.asset_graph.asset_check_keys)
    assert job.executor_def.name == defined.executor_def.name == "in_process"
    assert set(job.resource_defs) >= {"database", "truelayer", "enrichment_model"}


def test_the_runner_resolves_its_job_after_the_current_instance_is_gone(tmp_path):
    """Runs in one process (the CLI, the suite) outlive instances: a stale "current" defs-state
    storage (its instance closed and collected) once failed the next run's job resolution with
    "undefined DagsterInstance weakref" part-way through the suite."""
    import gc

    from dagster._core.storage.defs_state.base import set_defs_state_storage

    from bank_pipeline.config import Settings
    from bank_pipeline.runner import import_job

    with dg.instance_for_test(temp_dir=str(tmp_path)) as gone:
        storage = gone.defs_state_storage
    del gone
    gc.collect()
    assert storage is not None
    with set_defs_state_storage(storage):  # what a leaked `with instance:` leaves behind
        with pytest.raises(dg.DagsterInvariantViolationError, match="weakref"):
            dg.Definitions(assets=[dg.AssetSpec("a")]).resolve_asset_graph()
        job = import_job(Settings.from_env())
    assert job.name == "import_transactions"


# What the code location sends the Dagster UI (the repository snapshot, resource config included)
# and what a run launched by the runner records in the instance (its job snapshot), in a fresh
# process that loads `bank_pipeline.definitions` as `dagster` does.
_SNAPSHOTS = """
import json
import dagster as dg
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._serdes import serialize_value
from bank_pipeline.config import Settings
from bank_pipeline.definitions import defs
from bank_pipeline.runner import import_job

fields = {f"{key}.{name}": getattr(defs.resources[key], name)
          for key, name in (("database", "url"), ("truelayer", "client_secret"),
                            ("truelayer", "fernet_keys"), ("enrichment_model", "api_key"),
                            ("alert_channels", "urls"))}
resolved = defs.resources["truelayer"].process_config_and_initialize()
print(json.dumps({
    "bound": {k: v.env_var_name if isinstance(v, dg.EnvVar) else f"literal {v!r}" for k, v in fields.items()},
    "resolved_secret": resolved.secret(),
    "repository": serialize_value(RepositorySnap.from_def(defs.get_repository_def())),
    "runner_job": serialize_value(import_job(Settings.from_env()).get_job_snapshot()),
}))
"""

_SECRETS = {
    "TRUELAYER_CLIENT_SECRET": "s3cr3t-client-value",
    "BANK_PIPELINE_FERNET_KEYS": "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtbG9uZy1rZXk=",
    "ANTHROPIC_API_KEY": "sk-ant-test-value",
    "BANK_PIPELINE_DATABASE_URL": "postgresql://app:db-password-value@db/bank",
    # Alert channels: an SMTP password and a webhook token in a URL's path.
    "BANK_PIPELINE_ALERT_URLS": "mailtos://me:smtp-password-value@smtp.example.org?to=me@example.org "
    "json://push.example.org/hook/webhook-token-value",
}


def test_the_ui_sees_secrets_only_as_variable_names(tmp_path):
    """Every secret field of `defs` is `EnvVar(variable)`, never a literal: the repository snapshot
    the UI displays and the runner's recorded job snapshot carry the names, never the values."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, **_SECRETS, "BANK_PIPELINE_TRUELAYER_ENV": "sandbox", "TRUELAYER_CLIENT_ID": "app-123",
           "BANK_PIPELINE_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", _SNAPSHOTS], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    shown = json.loads(done.stdout.strip().splitlines()[-1])
    assert shown["bound"] == {
        "database.url": "BANK_PIPELINE_DATABASE_URL",
        "truelayer.client_secret": "TRUELAYER_CLIENT_SECRET",
        "truelayer.fernet_keys": "BANK_PIPELINE_FERNET_KEYS",
        "enrichment_model.api_key": "ANTHROPIC_API_KEY",
        "alert_channels.urls": "BANK_PIPELINE_ALERT_URLS",
    }
    assert shown["resolved_secret"] == _SECRETS["TRUELAYER_CLIENT_SECRET"]  # what a run gets
    for snapshot in ("repository", "runner_job"):
        for name, value in _SECRETS.items():
            assert value not in shown[snapshot], f"{name}'s value in the {snapshot} snapshot"
            assert "db-password-value" not in shown[snapshot]
            assert "smtp-password-value" not in shown[snapshot] and "webhook-token-value" not in shown[snapshot]
        assert "TRUELAYER_CLIENT_SECRET" in shown[snapshot] and "app-123" in shown[snapshot]


def test_unset_secrets_fall_back_explicitly(monkeypatch):
    """No variable, no EnvVar (Dagster would fail the run on an unset one): the simulator gets its
    public demo secret from the resource itself; sandbox and live fail naming the variable."""
    from bank_pipeline.config import SIMULATOR_CLIENT_SECRET, ConfigError
    from bank_pipeline.orchestration.resources import default_resources

    for name in (*_SECRETS, "TRUELAYER_CLIENT_ID", "BANK_PIPELINE_TRUELAYER_ENV"):
        monkeypatch.delenv(name, raising=False)
    resources = default_resources()
    truelayer = resources["truelayer"]
    assert (truelayer.client_secret, truelayer.fernet_keys, resources["enrichment_model"].api_key) == (None, None, None)
    assert resources["database"].url.startswith("sqlite:///")  # the embedded default holds no password
    assert truelayer.secret() == SIMULATOR_CLIENT_SECRET

    monkeypatch.setenv("BANK_PIPELINE_TRUELAYER_ENV", "sandbox")
    sandbox = default_resources()["truelayer"]
    with pytest.raises(ConfigError, match="^TRUELAYER_CLIENT_SECRET is not set"):
        sandbox.secret()
