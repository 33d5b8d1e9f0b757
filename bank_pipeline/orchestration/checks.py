"""Asset checks on the ledger, shown beside `loaded_transactions` in the Dagster UI."""


import dagster as dg

from bank_pipeline import quality
from bank_pipeline.orchestration.assets import loaded_transactions
from bank_pipeline.orchestration.resources import AppDatabase


@dg.asset_check(asset=loaded_transactions, description="No stable TrueLayer id appears twice in an account.")
def no_duplicate_transactions(database: AppDatabase) -> dg.AssetCheckResult:
    duplicates = quality.duplicate_provider_ids(database.get_engine())
    return dg.AssetCheckResult(
        passed=not duplicates,
        metadata={"duplicates": len(duplicates), "examples": dg.MetadataValue.json(duplicates[:10])},
    )


@dg.asset_check(
    asset=loaded_transactions,
    description="Running balances add up between consecutive transactions; a gap means a missing one.",
)
def running_balances_continuous(database: AppDatabase) -> dg.AssetCheckResult:
    gaps = quality.running_balance_gaps(database.get_engine())
    return dg.AssetCheckResult(
        passed=not gaps,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"gaps": len(gaps), "examples": dg.MetadataValue.json(gaps[:10])},
    )


@dg.asset_check(asset=loaded_transactions, description="Every quarantined row has been explained or resolved.")
def quarantine_explained(database: AppDatabase) -> dg.AssetCheckResult:
    open_rows = quality.unexplained_quarantine(database.get_engine())
    return dg.AssetCheckResult(
        passed=open_rows == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"unexplained_rows": open_rows},
        description=None if open_rows == 0 else "see the `quarantine` table for each row's reason",
    )


ledger_checks = [no_duplicate_transactions, running_balances_continuous, quarantine_explained]
