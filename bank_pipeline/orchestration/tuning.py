"""Dagster event-log settings for runs over many partitions.

A run over N account-day partitions of 5 assets writes 10·N event-log records (one "planned" and
one materialization per asset and partition). DAGSTER_EVENT_BATCH_SIZE makes Dagster write the
materializations in batches (a real multi-row insert on dagster-postgres). Set it yourself to
override. We do not set DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS: with it, the partitions
of a failed run show as missing instead of failed in the UI.
"""

import os

DEFAULTS = {
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
}


def apply_event_log_defaults() -> None:
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
