"""Assets downstream of the enriched ledger: `transfers` (pairs of legs between the user's own
accounts), `recurring_payments` (direct debits, standing orders and the ledger's repeats) and
`monthly_spending`, partitioned by account × month.

Each account-month depends on that account's days of the month (`DAYS_TO_MONTHS`), and its
automation condition asks for it again whenever one of those days is re-materialized — by the
daily schedule, a webhook run, `bank-pipeline import` or a UI backfill — once no run is still
importing them. So a backfill of days refreshes exactly the months it touched, and nothing else.
The runs are launched by `analytics_automation` (a sensor, evaluated by the daemon). Without a
daemon (`bank-pipeline demo`, `bank-pipeline import`), the runner launches the two analytics jobs
itself after the imports (`analytics_runs`): transfers are paired before recurring payments are
detected, and the account-months the imports touched are computed last.
"""

import datetime as dt
import time

import dagster as dg

from bank_pipeline.errors import BankPipelineError
from bank_pipeline.orchestration.assets import _accounts_for, enriched_transactions
from bank_pipeline.orchestration.partitions import (
    DAYS_TO_MONTHS,
    RANGE_END_TAG,
    RANGE_START_TAG,
    account_month_partitions,
    month_partition_key,
    months_by_account,
)
from bank_pipeline.orchestration.resources import AppDatabase

GROUP = "analytics"
# A month depends on ~30 days, so a UI backfill of monthly_spending itself is cheap: up to ten
# years of one account per run.
MONTHS_PER_RUN = 120

# Requested when one of its days was materialized since the month was last requested, once no
# run is importing them or computing it. Trigger and reset are the bare operands so that Dagster
# can compare their timestamps: a day re-imported after the month's run but before the next tick
# still counts. (`any_deps_updated().since_last_handled()` wraps them in and/or, which carry no
# timestamps, and then loses exactly that case; a regression test covers it.)
DAYS_IMPORTED_AGAIN = dg.AutomationCondition.any_deps_match(dg.AutomationCondition.newly_updated()).since(
    dg.AutomationCondition.newly_requested()
)
# Also requested when never computed although some of its days are imported: days imported before
# the sensor's first tick (no daemon yet, `bank-pipeline import`) are not "newly" updated. Not
# again after a failed run: the next import of its days asks again.
NEVER_COMPUTED = (
    dg.AutomationCondition.missing()
    & dg.AutomationCondition.any_deps_match(~dg.AutomationCondition.missing())
    & ~dg.AutomationCondition.execution_failed()
)
REFRESH_WHEN_DAYS_CHANGE = (
    (DAYS_IMPORTED_AGAIN | NEVER_COMPUTED)
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("days of this account-month imported since it was last requested, or never computed")


def after_imports(label: str) -> dg.AutomationCondition:
    """Requested after any import, once nothing upstream is still running: for the unpartitioned
    analytics, whose answers (a pair, a repeat) may span accounts and any days."""
    return (
        dg.AutomationCondition.any_deps_updated().since_last_handled()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label(label)


def ledger_asset(label: str, description: str, deps=()):
    """The decorator of an unpartitioned analytics asset: reads the whole enriched ledger, requested
    after imports (`after_imports(label)`)."""
    return dg.asset(
        group_name=GROUP,
        automation_condition=after_imports(label),
        kinds={"sql"},
        deps=[enriched_transactions, *deps],
        description=description,
    )


def stats_result(context: dg.AssetExecutionContext, stats, started: float, summary: str) -> dg.MaterializeResult:
    """The run's statistics and seconds as the materialization's metadata; `summary`, a template
    over that metadata, goes to the log."""
    metadata: dict[str, object] = dict(stats.as_metadata())
    metadata["seconds"] = round(time.perf_counter() - started, 3)
    context.log.info(f"{context.asset_key.to_user_string()}: {summary.format(**metadata)}")
    return dg.MaterializeResult(metadata=metadata)


class TransfersConfig(dg.Config):
    """How far apart the two legs of an amount-only match may be booked (the receiving leg on
    or after the sending leg's day)."""

    window_days: int = 3


@ledger_asset(
    "days imported since transfers were last paired",
    "Transfers between the user's own accounts: legs paired one-to-one (identifier → "
    "reference → amount and dates), labelled `transfers` unless the user set a category.",
)
def transfers(context: dg.AssetExecutionContext, config: TransfersConfig, database: AppDatabase) -> dg.MaterializeResult:
    from bank_pipeline.analytics.corrections import refresh_months
    from bank_pipeline.analytics.transfers import update_transfers

    started = time.perf_counter()
    engine = database.get_engine()
    try:
        stats = update_transfers(engine, window_days=config.window_days, run_id=context.run_id)
    except BankPipelineError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    # Months of spending computed before these legs were paired counted them: store them again.
    refresh_months(engine, stats.new_legs, context.run_id, only_stored=True)
    return stats_result(context, stats, started, "{new_pairs} new pair(s), {pairs} in all")


class RecurringConfig(dg.Config):
    """How far a payment may fall from its expected day, and how much a variable card bill's
    amount may differ between payments (a fraction)."""

    tolerance_days: int = 3
    amount_tolerance: float = 0.25


@ledger_asset(
    "days imported since recurring payments were last detected",
    "Recurring payments: the direct debits and standing orders the bank listed at connect time, "
    "plus weekly / monthly / quarterly / annual repeats found in the ledger; state, next date and amount. "
    "`bank-pipeline recurring list|dismiss ID`.",
    # Transfers first: a leg of a transfer between own accounts is never a recurring payment.
    deps=[transfers],
)
def recurring_payments(
    context: dg.AssetExecutionContext, config: RecurringConfig, database: AppDatabase
) -> dg.MaterializeResult:
    from bank_pipeline.analytics.recurring import DetectOptions, update_recurring

    if not 0 <= config.tolerance_days <= 10 or not 0 <= config.amount_tolerance <= 1:
        raise dg.Failure(
            description=f"recurring_payments: tolerance_days must be 0-10 and amount_tolerance 0-1, not "
            f"{config.tolerance_days} and {config.amount_tolerance}",
            allow_retries=False,
        )
    started = time.perf_counter()
    options = DetectOptions(tolerance_days=config.tolerance_days, amount_tolerance=config.amount_tolerance)
    stats = update_recurring(database.get_engine(), options=options, run_id=context.run_id)
    return stats_result(context, stats, started, "{patterns} pattern(s), {new} new, {dismissed} dismissed")


@dg.asset(
    partitions_def=account_month_partitions,
    deps=[dg.AssetDep(enriched_transactions, partition_mapping=DAYS_TO_MONTHS)],
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=MONTHS_PER_RUN),
    automation_condition=REFRESH_WHEN_DAYS_CHANGE,
    group_name=GROUP,
    kinds={"pandas", "sql"},
    description="Income, spending (own-account transfers excluded) and net per account × month × category; "
    "table `monthly_spending`. `bank-pipeline report --month YYYY-MM` prints it.",
)
def monthly_spending(context: dg.AssetExecutionContext, database: AppDatabase) -> dg.MaterializeResult:
    from bank_pipeline.analytics import monthly
    from bank_pipeline.analytics.report import markdown_table

    started = time.perf_counter()
    engine = database.get_engine()
    grouped = months_by_account(context.partition_keys)
    accounts = _accounts_for(engine, list(grouped))
    frame = monthly.refresh(
        engine, {accounts[key]["id"]: months for key, months in grouped.items()}, run_id=context.run_id
    )
    for key, months in grouped.items():
        account = accounts[key]
        for month in months:
            rows = monthly.month_with_changes(engine, month, [account["id"]])
            context.add_asset_metadata(
                {
                    "rows": len(rows),
                    "transactions": int(rows["transactions"].sum()) if len(rows) else 0,
                    "table": dg.MetadataValue.md(markdown_table(rows, title=f"{account['display_name'] or key} "
                                                                         f"{month:%Y-%m}")),
                },
                partition_key=month_partition_key(key, month),
            )
    context.log.info(f"monthly_spending: {len(frame)} row(s) for {len(context.partition_keys)} account-month(s)")
    return dg.MaterializeResult(
        metadata={
            "run_partitions": len(context.partition_keys),
            "run_rows": len(frame),
            "run_seconds": round(time.perf_counter() - started, 3),
        }
    )


analytics_assets = [transfers, recurring_payments, monthly_spending]

# On every analytics automation run: the run queue takes them one at a time (dagster.yaml's
# tag_concurrency_limits) and after any import waiting beside them (Dagster's priority tag; the
# default is 0), so analytics never hold back the imports they follow.
ANALYTICS_RUN_TAGS = {"bank_pipeline/analytics": "automation", "dagster/priority": "-1"}

analytics_automation = dg.AutomationConditionSensorDefinition(
    "analytics_automation",
    target=dg.AssetSelection.assets(transfers, recurring_payments, monthly_spending),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    run_tags=ANALYTICS_RUN_TAGS,
    description="Pairs transfers again, detects recurring payments again and re-computes the account-months whose days were imported again "
    "(the assets' automation conditions).",
)


LEDGER_ANALYTICS_JOB_NAME = "ledger_analytics"
MONTHLY_SPENDING_JOB_NAME = "monthly_spending_months"
ledger_analytics_job = dg.define_asset_job(
    LEDGER_ANALYTICS_JOB_NAME,
    selection=dg.AssetSelection.assets(transfers, recurring_payments),
    description="Pair transfers, then detect recurring payments, over the whole ledger.",
)
monthly_spending_job = dg.define_asset_job(
    MONTHLY_SPENDING_JOB_NAME,
    selection=dg.AssetSelection.assets(monthly_spending),
    partitions_def=account_month_partitions,
    description="Compute monthly_spending for a range of account-months.",
)
analytics_jobs = [ledger_analytics_job, monthly_spending_job]


def month_range_tags(account_keys: list[str], first: dt.date, last: dt.date) -> dict[str, str]:
    """Tags making one run of `monthly_spending_months` cover the months of first..last for these
    accounts (sorted keys: a range spans the accounts between the first and the last)."""
    keys = sorted(account_keys)
    return {
        RANGE_START_TAG: month_partition_key(keys[0], first),
        RANGE_END_TAG: month_partition_key(keys[-1], last),
    }
