"""Runs over many accounts: a group holds every account it covers, and one account's failure stays its own."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from bank_pipeline.db.schema import account_leases, accounts, raw_fetches
from bank_pipeline_tests.fixtures.clock import TODAY
from bank_pipeline_tests.fixtures.pipeline import Pipeline, expected_totals, settings_for


def test_a_group_run_holds_its_accounts_and_one_accounts_failure_stays_its_own(
    simulator_factory, sqlite_url, dagster_instance, tmp_path, monkeypatch
):
    from bank_pipeline.limits import acquire_lease
    from bank_pipeline.orchestration import assets
    from bank_pipeline.orchestration.partitions import (
        ACCOUNTS_PARTITIONS_NAME,
        group_range_tags,
        sync_account_partitions,
    )
    from bank_pipeline.orchestration.sensors import record_run_failure
    from bank_pipeline.runner import _failure_reason, import_job
    from bank_pipeline.simulator import FaultConfig, SimulatorConfig

    sim = simulator_factory(SimulatorConfig(seed=42, today=TODAY, faults=FaultConfig(unattended_limit=None)))
    settings = settings_for(sqlite_url, sim, tmp_path / "home", unattended_daily_budget=1000)
    pipe = Pipeline(settings, sim, dagster_instance, "alice")
    sync_account_partitions(dagster_instance, pipe.keys)
    order = list(dagster_instance.get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME))
    assert len(order) >= 3
    ids = {a["account_key"]: a["id"] for a in pipe.accounts}
    first, last = TODAY - dt.timedelta(days=7), TODAY - dt.timedelta(days=1)
    tags = group_range_tags(order, first, last)
    job = import_job(settings)

    # Another run is importing the middle account and keeps it: the group waits for it, then gives
    # up on that account alone; the others go all the way to the ledger, on the fetch step's threads.
    blocked = order[1]
    monkeypatch.setattr(assets, "LEASE_WAIT_SECONDS", 1)
    acquire_lease(pipe.engine, ids[blocked], "another-run", ttl_seconds=600)
    result = job.execute_in_process(instance=dagster_instance, tags=tags, raise_on_error=False)
    assert not result.success
    reason = _failure_reason(result)
    assert f"failed for 1 of {len(order)} account(s)" in reason and blocked in reason and "another-run" in reason
    truth = expected_totals(pipe.truth(first, last))
    ledger = pipe.ledger_totals(first, last)
    for key in order:
        pid = pipe.provider_id(key)
        assert ledger[pid] == ((0, 0) if key == blocked else truth[pid]), key
    with pipe.engine.connect() as conn:
        fetched = set(conn.execute(sa.select(raw_fetches.c.account_id).distinct()).scalars())
        leases = dict(conn.execute(sa.select(account_leases.c.account_id, account_leases.c.holder)).all())
    assert fetched == {ids[k] for k in order if k != blocked}  # no bank call for the account it did not hold
    assert leases == {ids[blocked]: "another-run"}  # the group's own leases are released
    # The failure sensor names only that account, with its step's reason.
    assert record_run_failure(pipe.engine, result.run_id, tags, "run failed") == [blocked]
    with pipe.engine.connect() as conn:
        failed = dict(conn.execute(sa.select(accounts.c.account_key, accounts.c.last_failure_run_id)).all())
    assert {k for k, run in failed.items() if run == result.run_id} == {blocked}

    # The other run ends: the same group run again imports the account and adds nothing twice.
    from bank_pipeline.limits import release_leases

    release_leases(pipe.engine, "another-run")
    again = job.execute_in_process(instance=dagster_instance, tags=tags, raise_on_error=False)
    assert again.success, _failure_reason(again)
    assert pipe.ledger_totals(first, last) == {pid: truth[pid] for pid in ledger}
