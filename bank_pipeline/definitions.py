"""The one `Definitions` object: assets, checks, the import job, schedule, sensors and resources."""

import dagster as dg

from bank_pipeline.orchestration.analytics import analytics_assets, analytics_automation
from bank_pipeline.orchestration.assets import transaction_assets
from bank_pipeline.orchestration.checks import ledger_checks, ledger_checks_job
from bank_pipeline.orchestration.executors import import_executor
from bank_pipeline.orchestration.jobs import import_transactions
from bank_pipeline.orchestration.resources import default_resources
from bank_pipeline.orchestration.schedules import daily_import_schedule
from bank_pipeline.orchestration.sensors import (
    account_partitions_sensor,
    ledger_checks_after_failure_sensor,
    record_failures_sensor,
    webhook_events_sensor,
)

defs = dg.Definitions(
    # The import job selects only the transaction assets (one partitions definition: account × day);
    # transfers and monthly_spending (account × month) follow through their automation conditions.
    assets=[*transaction_assets, *analytics_assets],
    asset_checks=ledger_checks,
    jobs=[import_transactions, ledger_checks_job],
    schedules=[daily_import_schedule],
    sensors=[
        webhook_events_sensor,
        account_partitions_sensor,
        record_failures_sensor,
        ledger_checks_after_failure_sensor,
        analytics_automation,
    ],
    # From the validated environment; every secret field is EnvVar("its variable") whenever that
    # variable is set, so the UI shows names, never values (test_definitions.py checks the snapshot).
    resources=default_resources(),
    # Runs launched from the UI (`__ASSET_JOB`) use the same executor as the import job
    # (BANK_PIPELINE_EXECUTOR: in-process by default, or Celery).
    executor=import_executor(),
)
