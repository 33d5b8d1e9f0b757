"""Dagster event-log tuning: the one place, set through the environment of the processes that
create or execute runs — never as a side effect of importing the definitions.

A run over N account-day partitions of the five assets writes 10·N event-log records (one
"planned" and one materialization per asset and partition). With `DAGSTER_EVENT_BATCH_SIZE` set,
Dagster writes a step's materializations in batches (one multi-row insert on dagster-postgres)
instead of one insert each. Dagster reads the variable from the environment of the process that
executes the step, every time (dagster/_core/instance/methods/event_methods.py), and documents it
only in a code comment; `bank_pipeline_tests/test_event_batching.py` fails when it stops honouring it.

Who sets it:
- `make ui`: `dg dev` (webserver, daemon and the run processes they launch) gets
  `python -m bank_pipeline.orchestration.instance`'s `NAME=value` pairs as its environment;
- `bank_pipeline.runner.import_job` (CLI imports, history, demo, tests) before it creates runs;
- a deployment: put the same variables in the run workers' environment.
A value already in the environment wins. DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS is not
set: with it, the partitions of a failed run show as missing instead of failed in the UI.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

EVENT_LOG_ENVIRONMENT = {
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
}


def apply_event_log_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set the variables in `environ` (this process's by default) unless they are already set."""
    for name, value in EVENT_LOG_ENVIRONMENT.items():
        environ.setdefault(name, value)
