"""The runs' console logger: what a run prints where it runs (the `make ui` terminal, the daemon's).

Dagster prints every event of a run at DEBUG when no logger is configured: a year's backfill put
a line per partition and per check result in the terminal. Runs print INFO and above (progress,
warnings, errors) unless BANK_PIPELINE_LOG_LEVEL=DEBUG; the full event log stays in the UI.
"""

import dagster as dg
from dagster._loggers import colored_console_logger

from bank_pipeline.config import run_log_level


def console_logger() -> dg.LoggerDefinition:
    """Dagster's colored console logger, its threshold defaulting to BANK_PIPELINE_LOG_LEVEL."""
    return dg.LoggerDefinition(
        colored_console_logger.logger_fn,
        config_schema={
            "log_level": dg.Field(str, is_required=False, default_value=run_log_level()),
            "name": dg.Field(str, is_required=False, default_value="dagster"),
        },
        description="Dagster's console logger at BANK_PIPELINE_LOG_LEVEL (INFO unless set).",
    )
