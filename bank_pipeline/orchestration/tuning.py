"""Dagster event-log settings that make single-run backfills over thousands of partitions cheap.

A run over N account-day partitions of 5 assets writes 10·N event-log records by default (one
"planned" and one materialization per asset and partition, each its own write). Dagster has two
switches for this, read from the environment of the process that creates or executes the run:

- DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS: one planned event per asset carrying the whole
  partition range. Trade-off (Dagster's): if such a run fails, its partitions show as missing
  rather than failed in the UI; `record_failures_sensor` still records the failure per account.
- DAGSTER_EVENT_BATCH_SIZE: materializations are written in batches (a real multi-row insert on
  dagster-postgres; SQLite storage still writes them one by one).

We default both on; set either variable yourself (e.g. to 0) to override. The webserver and the
daemon must see them too, since they create backfill and UI-launched runs: the README says so.
"""

import os

DEFAULTS = {
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
}


def apply_event_log_defaults() -> None:
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
