"""The one `Definitions` object loads: what `dagster dev -w workspace.yaml` and the daemon load."""

import dagster as dg
import pytest


@pytest.fixture(autouse=True)
def live_instance():
    """Resolving definitions consults the current instance's stored state (Dagster's
    DefsStateStorage): give it a live one, as `dagster dev` and the runner have."""
    with dg.instance_for_test() as instance:
        yield instance


def test_the_code_locations_definitions_load_and_validate():
    from bank_pipeline.definitions import defs

    dg.Definitions.validate_loadable(defs)  # keys, names, asset jobs, resources, partition mappings
    repository = defs.get_repository_def()
    assert {job.name for job in repository.get_all_jobs()} >= {"import_transactions"}
    assert {s.name for s in repository.schedule_defs} == {"daily_import_schedule"}
    assert {s.name for s in repository.sensor_defs} == {
        "webhook_events_sensor",
        "account_partitions_sensor",
        "record_failures_sensor",
        "analytics_automation",
    }
    assert set(defs.resources) == {"database", "truelayer", "enrichment_model"}


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
