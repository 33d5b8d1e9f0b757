"""The import job: every stage for a set of account × day partitions.

Its executor comes from BANK_PIPELINE_EXECUTOR (orchestration/executors.py): by default the
in-process executor keeps a run's five short steps in one process (no per-step process start-up);
`celery` makes each step a Celery task. The work inside each step is batched across all of the
run's partitions either way.
"""

import dagster as dg

from bank_pipeline.orchestration.assets import transaction_assets
from bank_pipeline.orchestration.executors import import_executor

IMPORT_JOB_NAME = "import_transactions"

import_transactions = dg.define_asset_job(
    IMPORT_JOB_NAME,
    selection=dg.AssetSelection.assets(*transaction_assets),
    executor_def=import_executor(),
    description="Fetch, normalize, dedup, load and enrich transactions for account × day partitions.",
)
