"""The import job: every stage for a set of account × day partitions, in one process.

The in-process executor keeps a run's five short steps in one process (no per-step process
start-up); the work inside each step is batched across all of the run's partitions.
"""

import dagster as dg

from bank_pipeline.orchestration.assets import transaction_assets

IMPORT_JOB_NAME = "import_transactions"

import_transactions = dg.define_asset_job(
    IMPORT_JOB_NAME,
    selection=dg.AssetSelection.assets(*transaction_assets),
    executor_def=dg.in_process_executor,
    description="Fetch, normalize, dedup, load and enrich transactions for account × day partitions.",
)
