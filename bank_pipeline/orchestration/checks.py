"""Asset checks on the ledger, shown beside `loaded_transactions` in the Dagster UI.

Each looks only at the account-days of the run it follows (from the run's partition tags), so a
daily run checks a few days, not the whole ledger; a run without partition tags checks everything.
The checks are partitioned like the asset: an unpartitioned check on a partitioned asset makes
Dagster list every partition of the asset (every account × every day since the start) when it
records the check's target, which took 40 s a check at 1,000 accounts.

A run that fails before its checks (budget deferred, consent expired) leaves them planned, and
Dagster shows a planned check of a failed run as "Execution failed", in red, beside the asset:
a failed import would look like a failed ledger. So such a run is followed by a `ledger_checks`
run over the same partitions (`checks_after_failure`), and the checks show what the ledger holds.
Each partition gets its own result (`report_partitions`), not only the run's range.
"""

import datetime as dt
import json
import warnings
from collections.abc import Collection

import dagster as dg
import sqlalchemy as sa
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from bank_pipeline import quality
from bank_pipeline.db.schema import accounts
from bank_pipeline.orchestration.assets import loaded_transactions
from bank_pipeline.orchestration.partitions import (
    ACCOUNT_TAG,
    ACCOUNTS_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    account_keys_from_tags,
    days_by_account,
    days_from_tags,
    partition_key,
    transaction_partitions,
)
from bank_pipeline.orchestration.resources import AppDatabase

# Partitioned checks (above: why) are a Dagster preview; its notice would open every CLI command's output.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning)


def run_scope(context: dg.AssetCheckExecutionContext, engine: sa.Engine) -> tuple[quality.LedgerScope | None, dict[str, int]]:
    """The run's account-days as a LedgerScope (None when the run names no partitions), and every
    account's id by its key."""
    with engine.connect() as conn:
        ids_by_key = dict(conn.execute(sa.select(accounts.c.account_key, accounts.c.id)).all())
    tags = context.run.tags
    days = days_from_tags(tags)
    if days is None:
        return None, ids_by_key
    keys = account_keys_from_tags(tags, ids_by_key)
    return quality.LedgerScope(tuple(ids_by_key[k] for k in keys if k in ids_by_key), days[0], days[1]), ids_by_key


def report_partitions(
    context: dg.AssetCheckExecutionContext,
    check_name: str,
    failing: Collection[tuple[int, dt.date]],
    ids_by_key: dict[str, int],
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> None:
    """One evaluation per partition of a run over a range, passed unless (account id, day) is in
    `failing`. Dagster records a range run's check result for no partition (it gives a result a
    partition only in a one-partition run), so each partition would show "Skipped"; with these
    they show Succeeded or Failed: in runs of any size (connect's history runs too), as every day
    in the ledger has a result the Checks tab shows."""
    op = context.op_execution_context
    if op.has_partition_key or not op.has_partition_key_range:
        return
    keys = op.partition_keys
    targets = _latest_materializations(context.instance, keys)
    for account_key, days in days_by_account(keys).items():
        account_id = ids_by_key.get(account_key)
        for day in days:
            key = str(partition_key(account_key, day))
            op.log_event(dg.AssetCheckEvaluation(
                asset_key=loaded_transactions.key,
                check_name=check_name,
                passed=(account_id, day) not in failing,
                metadata={},
                severity=severity,
                partition=key,
                target_materialization_data=targets.get(key),
            ))


def _latest_materializations(
    instance: dg.DagsterInstance, keys: list[str]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """Each partition's latest `loaded_transactions` materialization, which a check result names as
    what it checked: Dagster shows a partition's result only while it names the latest one."""
    asset_key = loaded_transactions.key
    latest = instance.event_log_storage.get_latest_storage_id_by_partition(
        asset_key, dg.DagsterEventType.ASSET_MATERIALIZATION, partitions=set(keys)
    )
    if not latest:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=list(latest.values())), limit=len(latest)
    ).records
    return {
        record.partition_key: AssetCheckEvaluationTargetMaterializationData(
            storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
        )
        for record in records
        if record.partition_key is not None
    }


def _scope_metadata(scope: quality.LedgerScope | None) -> dict:
    if scope is None:
        return {"scope": "whole ledger"}
    return {"scope": f"{len(scope.account_ids)} account(s), {scope.first} to {scope.last}"}


def _nothing_found(name: str, found: list, scope: quality.LedgerScope | None, **result) -> dg.AssetCheckResult:
    """Passes when `found` is empty; its count under `name`, the first ten and the scope as metadata."""
    return dg.AssetCheckResult(
        passed=not found,
        metadata={name: len(found), "examples": dg.MetadataValue.json(json.loads(json.dumps(found[:10], default=str))), **_scope_metadata(scope)},
        **result,
    )


@dg.asset_check(
    asset=loaded_transactions, partitions_def=transaction_partitions,
    description="No stable TrueLayer id appears twice in an account.",
)
def no_duplicate_transactions(context: dg.AssetCheckExecutionContext, database: AppDatabase) -> dg.AssetCheckResult:
    engine = database.get_engine()
    scope, ids_by_key = run_scope(context, engine)
    found = quality.duplicate_provider_ids(engine, scope)
    failing = {(row["account_id"], day) for row in found for day in (row["first_day"], row["last_day"])}
    report_partitions(context, "no_duplicate_transactions", failing, ids_by_key)
    return _nothing_found("duplicates", found, scope)


@dg.asset_check(
    asset=loaded_transactions, partitions_def=transaction_partitions,
    description="Running balances add up between consecutive transactions; a gap means a missing one.",
)
def running_balances_continuous(context: dg.AssetCheckExecutionContext, database: AppDatabase) -> dg.AssetCheckResult:
    engine = database.get_engine()
    scope, ids_by_key = run_scope(context, engine)
    gaps = quality.running_balance_gaps(engine, scope=scope)
    failing = {(gap["account_id"], dt.date.fromisoformat(gap["booking_date"])) for gap in gaps}
    report_partitions(context, "running_balances_continuous", failing, ids_by_key, dg.AssetCheckSeverity.WARN)
    return _nothing_found("gaps", gaps, scope, severity=dg.AssetCheckSeverity.WARN)


@dg.asset_check(
    asset=loaded_transactions, partitions_def=transaction_partitions,
    description="Every quarantined row has been explained or resolved.",
)
def quarantine_explained(context: dg.AssetCheckExecutionContext, database: AppDatabase) -> dg.AssetCheckResult:
    engine = database.get_engine()
    scope, ids_by_key = run_scope(context, engine)
    by_day = quality.unexplained_quarantine_by_day(engine, scope)
    report_partitions(context, "quarantine_explained", by_day, ids_by_key, dg.AssetCheckSeverity.WARN)
    open_rows = sum(by_day.values())
    return dg.AssetCheckResult(
        passed=open_rows == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"unexplained_rows": open_rows, **_scope_metadata(scope)},
        description=None if open_rows == 0 else "see the `quarantine` table for each row's reason",
    )


ledger_checks = [no_duplicate_transactions, running_balances_continuous, quarantine_explained]


LEDGER_CHECKS_JOB_NAME = "ledger_checks"
CHECKS_AFTER_TAG = "bank_pipeline/checks_after"
"""On a `ledger_checks` run: the failed run whose checks it stands in for."""
_PARTITION_TAGS = ("dagster/partition", RANGE_START_TAG, RANGE_END_TAG, ACCOUNT_TAG, ACCOUNTS_TAG)

ledger_checks_job = dg.define_asset_job(
    LEDGER_CHECKS_JOB_NAME,
    selection=dg.AssetSelection.checks(*ledger_checks),
    partitions_def=transaction_partitions,
    executor_def=dg.in_process_executor,
    description="The ledger checks alone, over a failed import run's partitions (its own checks never ran).",
)


def checks_after_failure(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dict[str, str] | None:
    """The tags of the `ledger_checks` run that stands in for `run`'s checks, or None when none is
    due: the run is not a failed partition run, or its checks ran (a failed check is a finding, not
    something to paper over), or it is itself a `ledger_checks` run."""
    if run.job_name == LEDGER_CHECKS_JOB_NAME or run.status != dg.DagsterRunStatus.FAILURE:
        return None
    if days_from_tags(run.tags) is None:
        return None

    def check_names(event_type: dg.DagsterEventType) -> set[str]:
        records = instance.get_records_for_run(run.run_id, of_type=event_type, limit=10_000).records
        return {record.event_log_entry.dagster_event.event_specific_data.check_name for record in records}

    planned = check_names(dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED)
    if not planned - check_names(dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        return None
    tags = {name: value for name, value in run.tags.items() if name in _PARTITION_TAGS}
    return {**tags, CHECKS_AFTER_TAG: run.run_id}
