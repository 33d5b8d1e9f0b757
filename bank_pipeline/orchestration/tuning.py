"""Dagster event-log settings that make single-run backfills over thousands of partitions cheap.

A run over N account-day partitions of 5 assets writes 10·N event-log records (one "planned" and
one materialization per asset and partition). DAGSTER_EVENT_BATCH_SIZE, read from the environment
of the process that executes the run, writes the materializations in batches (a real multi-row
insert on dagster-postgres; the SQLite storages write them one by one, on cheap commits:
sqlite_storage.py). We do not set DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS: with it, the
partitions of a failed run show as missing rather than failed.

We default it on; set the variable yourself (e.g. to 0) to override. The webserver and the
daemon must see it too, since they create backfill and UI-launched runs: the README says so.
"""

import os

DEFAULTS = {
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
}


def apply_event_log_defaults() -> None:
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
