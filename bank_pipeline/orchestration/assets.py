"""The transaction assets: fetch → normalize → dedup → load → enrich, partitioned by account × day.

Each asset is thin: it groups the run's partition keys by account and hands each account's days
to a plain function in `bank_pipeline.ingest` / `bank_pipeline.enrich`. Stages pass data through
the application database, so every asset returns only metadata (no IO manager), and a backfill is
cut into runs of one account and one bank window (`BACKFILL`).
"""


import datetime as dt
import time
import warnings
from collections import Counter
from collections.abc import Callable

import dagster as dg
import sqlalchemy as sa
from sqlalchemy import Engine

from bank_pipeline import clock
from bank_pipeline.db.schema import accounts as accounts_table
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.orchestration.partitions import (
    FETCH_MODE_TAG,
    SCHEDULE_TAG,
    SENSOR_TAG,
    days_by_account,
    partition_key,
    transaction_partitions,
)
from bank_pipeline.orchestration.resources import AppDatabase, EnrichmentModel, TrueLayerResource

# Single-run backfills are the point of this design; Dagster still labels the parameter beta.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)

GROUP = "transactions"
# A backfill run covers at most one bank window of one account (Dagster cuts backfills per
# account, then into chunks of this many days: TrueLayer's 90-day window, the default
# BANK_PIPELINE_MAX_WINDOW_DAYS), so a run is one TrueLayer call: what the budget allows today
# lands all the way to the ledger, and what it does not shows as failed partitions.
BACKFILL_RUN_DAYS = 90
BACKFILL = dg.BackfillPolicy.multi_run(max_partitions_per_run=BACKFILL_RUN_DAYS)
LEASE_WAIT_SECONDS = 900
LEASE_TTL_SECONDS = 1800
CONSENT_WARNING_DAYS = 7


def _accounts_for(engine: Engine, keys: list[str]) -> dict[str, dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(accounts_table).where(accounts_table.c.account_key.in_(keys)))
        found = {row.account_key: dict(row._mapping) for row in rows}
    missing = sorted(set(keys) - set(found))
    if missing:
        raise dg.Failure(
            description=f"unknown account partition(s) {missing}: no such account in the application "
            "database (connect the bank with `bank-pipeline connect`, then `bank-pipeline partitions sync`)"
        )
    return found


def _record_failure(engine: Engine, account_id: int, run_id: str, message: str) -> None:
    from bank_pipeline.db import utcnow

    with engine.begin() as conn:
        conn.execute(
            accounts_table.update()
            .where(accounts_table.c.id == account_id)
            .values(last_failure_run_id=run_id, last_failure_message=message[:2000], last_failure_at=utcnow())
        )


def run_per_account(
    context: dg.AssetExecutionContext,
    engine: Engine,
    stage: str,
    work: Callable[[dict, list[dt.date]], object],
    per_day: Callable[[dict, list[dt.date]], dict[dt.date, dict]] | None = None,
) -> dg.MaterializeResult:
    """Run `work(account, days)` for each account in the run, holding that account's lease.

    The lease is taken by the run (re-entrant across its stages) and released when `enrich` ends
    or the run fails, so two runs never import the same account at once. An expected, per-account
    problem (consent expired, budget exhausted, bank limits) is recorded on the account and the
    other accounts still get this stage's work (what they fetched stays landed); then the step
    fails, so the run fails and Dagster shows its partitions as failed — a failure never hides
    behind another account's success. Dagster cannot fail some partitions of one step and
    materialize the others (dagster-io/dagster#17836): runs are cut per account and per bank
    window so that a failure covers no more than it must.

    The step's metadata holds run totals, named `run_…`; `per_day(account, days)` adds each
    partition's own figures.
    """
    from bank_pipeline.limits import acquire_lease

    started = time.perf_counter()
    grouped = days_by_account(context.partition_keys)
    accounts = _accounts_for(engine, list(grouped))
    totals: Counter = Counter()
    failures: dict[str, str] = {}
    for key, days in grouped.items():
        account = accounts[key]
        try:
            acquire_lease(engine, account["id"], context.run_id, ttl_seconds=LEASE_TTL_SECONDS,
                          wait_seconds=LEASE_WAIT_SECONDS)
            stats = work(account, days)
        except BankPipelineError as exc:
            failures[key] = str(exc)
            context.log.error(f"{stage} {key} ({account['display_name']}): {exc}")
            _record_failure(engine, account["id"], context.run_id, f"{stage}: {exc}")
            continue
        for name, value in stats.as_metadata().items():
            totals[name] += value
        context.log.info(f"{stage} {key}: {len(days)} day(s) {stats.as_metadata()}")
        if per_day is not None:
            for day, figures in per_day(account, days).items():
                context.add_asset_metadata(figures, partition_key=partition_key(key, day))
    if failures:
        detail = "; ".join(f"{key}: {message}" for key, message in failures.items())
        raise dg.Failure(
            description=f"{stage} failed for {len(failures)} of {len(grouped)} account(s): {detail}",
            metadata={"failed_accounts": dg.MetadataValue.json(failures)},
            allow_retries=False,
        )
    metadata: dict[str, object] = {f"run_{name}": value for name, value in totals.items()}
    metadata.update(
        run_accounts=len(grouped),
        run_partitions=len(context.partition_keys),
        run_seconds=round(time.perf_counter() - started, 3),
    )
    return dg.MaterializeResult(metadata=metadata)


def _fetch_options(context: dg.AssetExecutionContext, truelayer: TrueLayerResource) -> dict:
    """How this run treats landed days and the budget, from its tags.

    Scheduled and sensor runs are the daily import: they may spend the whole unattended budget.
    Any other run (a UI backfill, `bank-pipeline import`) keeps `backfill_reserve` calls for it.
    """
    tags = context.run.tags
    daily = SCHEDULE_TAG in tags or SENSOR_TAG in tags
    today = clock.today_in(truelayer.timezone)
    return dict(
        mode=tags.get(FETCH_MODE_TAG, "auto"),
        settled_before=today - dt.timedelta(days=truelayer.lookback_days),
        budget_keep=0 if daily else truelayer.backfill_reserve,
    )


@dg.asset(
    partitions_def=transaction_partitions,
    backfill_policy=BACKFILL,
    group_name=GROUP,
    kinds={"truelayer", "sql"},
    pool="truelayer",
    description="What TrueLayer sent, verbatim: one API call per account per contiguous window.",
)
def fetched_transactions(
    context: dg.AssetExecutionContext, database: AppDatabase, truelayer: TrueLayerResource
) -> dg.MaterializeResult:
    from bank_pipeline.ingest.fetch import fetch_account_days
    from bank_pipeline.ingest.per_day import raw_rows_by_day
    from bank_pipeline.limits import UnattendedBudget

    engine = database.get_engine()
    budget = UnattendedBudget(engine, truelayer.unattended_daily_budget)
    clients: dict[int, object] = {}

    options = _fetch_options(context, truelayer)

    def fetch(account: dict, days: list[dt.date]):
        connection_id = account["connection_id"]
        if connection_id not in clients:
            clients[connection_id] = truelayer.client_for(engine, connection_id)
        return fetch_account_days(
            engine,
            clients[connection_id],
            account,
            days,
            run_id=context.run_id,
            max_window_days=truelayer.max_window_days,
            budget=budget,
            **options,
        )

    result = run_per_account(
        context, engine, "fetch", fetch, lambda account, days: raw_rows_by_day(engine, account["id"], days)
    )
    from bank_pipeline.connections import consent_warnings

    for warning in consent_warnings(engine, within_days=CONSENT_WARNING_DAYS):
        context.log.warning(warning)  # in the run's log, ahead of the consent running out
    return result


@dg.asset(
    partitions_def=transaction_partitions,
    backfill_policy=BACKFILL,
    group_name=GROUP,
    kinds={"sql"},
    deps=[fetched_transactions],
    description="Validated, typed rows (signed amounts, UTC instants, booking dates); the rest quarantined.",
)
def normalized_transactions(context: dg.AssetExecutionContext, database: AppDatabase) -> dg.MaterializeResult:
    from bank_pipeline.ingest.normalize import normalize_account_days

    engine = database.get_engine()
    return run_per_account(
        context, engine, "normalize", lambda account, days: normalize_account_days(engine, account["id"], days)
    )


@dg.asset(
    partitions_def=transaction_partitions,
    backfill_policy=BACKFILL,
    group_name=GROUP,
    kinds={"sql"},
    deps=[normalized_transactions],
    description="Each row's dedup key (normalised id → provider id → content hash) and new/duplicate verdict.",
)
def deduplicated_transactions(context: dg.AssetExecutionContext, database: AppDatabase) -> dg.MaterializeResult:
    from bank_pipeline.ingest.dedup import dedup_account_days

    engine = database.get_engine()
    return run_per_account(
        context, engine, "dedup", lambda account, days: dedup_account_days(engine, account["id"], days)
    )


@dg.asset(
    partitions_def=transaction_partitions,
    backfill_policy=BACKFILL,
    group_name=GROUP,
    kinds={"sql"},
    deps=[deduplicated_transactions],
    description="The ledger: booked transactions inserted idempotently; the pending set replaced.",
)
def loaded_transactions(context: dg.AssetExecutionContext, database: AppDatabase) -> dg.MaterializeResult:
    from bank_pipeline.ingest.load import load_account_days
    from bank_pipeline.ingest.per_day import ledger_rows_by_day

    engine = database.get_engine()
    return run_per_account(
        context,
        engine,
        "load",
        lambda account, days: load_account_days(engine, account["id"], days, run_id=context.run_id),
        lambda account, days: ledger_rows_by_day(engine, account["id"], days, run_id=context.run_id),
    )


@dg.asset(
    partitions_def=transaction_partitions,
    backfill_policy=BACKFILL,
    group_name=GROUP,
    kinds={"sql"},
    deps=[loaded_transactions],
    description="Category, merchant, essential/discretionary… from rules, the cache, then a model.",
)
def enriched_transactions(
    context: dg.AssetExecutionContext, database: AppDatabase, enrichment_model: EnrichmentModel
) -> dg.MaterializeResult:
    from bank_pipeline.enrich import enrich_account_days
    from bank_pipeline.limits import acquire_lease, release_leases

    started = time.perf_counter()
    engine = database.get_engine()
    grouped = days_by_account(context.partition_keys)
    accounts = _accounts_for(engine, list(grouped))
    try:
        for account in accounts.values():
            acquire_lease(engine, account["id"], context.run_id, ttl_seconds=LEASE_TTL_SECONDS,
                          wait_seconds=LEASE_WAIT_SECONDS)
        # One call for the whole run, so model batches span every partition in it.
        stats = enrich_account_days(
            engine,
            {accounts[key]["id"]: days for key, days in grouped.items()},
            enrichment_model.build(),
            run_id=context.run_id,
        )
    finally:
        release_leases(engine, context.run_id)  # the run's import of these accounts is over
    metadata = {f"run_{name}": value for name, value in stats.as_metadata().items()}
    metadata.update(run_accounts=len(grouped), run_seconds=round(time.perf_counter() - started, 3))
    return dg.MaterializeResult(metadata=metadata)


transaction_assets = [
    fetched_transactions,
    normalized_transactions,
    deduplicated_transactions,
    loaded_transactions,
    enriched_transactions,
]

ANALYTICS_GROUP = "analytics"


class TransfersConfig(dg.Config):
    """How far apart the two legs of an amount-only match may be booked (the receiving leg on
    or after the sending leg's day)."""

    window_days: int = 3


@dg.asset(
    group_name=ANALYTICS_GROUP,
    kinds={"sql"},
    deps=[enriched_transactions],
    description="Transfers between the user's own accounts: legs paired one-to-one (identifier → "
    "reference → amount and dates), labelled `transfers` unless the user set a category.",
)
def transfers(context: dg.AssetExecutionContext, config: TransfersConfig, database: AppDatabase) -> dg.MaterializeResult:
    from bank_pipeline.analytics.transfers import update_transfers

    started = time.perf_counter()
    try:
        stats = update_transfers(database.get_engine(), window_days=config.window_days, run_id=context.run_id)
    except BankPipelineError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    metadata: dict[str, object] = dict(stats.as_metadata())
    metadata["seconds"] = round(time.perf_counter() - started, 3)
    context.log.info(f"transfers: {stats.new_pairs} new pair(s), {metadata['pairs']} in all")
    return dg.MaterializeResult(metadata=metadata)


analytics_assets = [transfers]
