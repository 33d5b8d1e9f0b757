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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed

import dagster as dg
import sqlalchemy as sa
from sqlalchemy import Engine

from bank_pipeline import clock
from bank_pipeline.db.schema import accounts as accounts_table
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.orchestration.partitions import (
    ACCOUNTS_TAG,
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
# Each partition's own figures go on its materialization in runs up to this size. Dagster checks
# every `add_asset_metadata(partition_key=…)` against the run's whole key range, reading the
# dynamic account partitions from the instance each time: a year × 5 accounts spent minutes
# there. Larger runs (long backfills) carry the run's totals, named `run_…`.
PER_PARTITION_METADATA_MAX = 120
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


def _stage(*, description: str, after: dg.AssetsDefinition | None = None, kinds=frozenset({"sql"}), **kwargs):
    """An ingest stage's asset: account × day partitions, one run per backfill, after the stage before."""
    return dg.asset(
        partitions_def=transaction_partitions,
        backfill_policy=BACKFILL,
        group_name=GROUP,
        kinds=set(kinds),
        deps=[after] if after is not None else None,
        description=description,
        **kwargs,
    )


def _record_failure(engine: Engine, account_id: int, run_id: str, message: str) -> None:
    from bank_pipeline.connections import record_failure

    with engine.begin() as conn:
        record_failure(conn, run_id, message, accounts_table.c.id == account_id)


def _map_accounts(
    fn: Callable[[str], object], keys: list[str], concurrency: int
) -> Iterator[tuple[str, object]]:
    """Yield (key, fn(key)) as each account finishes, up to `concurrency` at once on threads; an
    expected per-account problem (BankPipelineError) is yielded as the result, anything else raised."""
    if concurrency <= 1 or len(keys) <= 1:
        for key in keys:
            try:
                yield key, fn(key)
            except BankPipelineError as exc:
                yield key, exc
        return
    pool = ThreadPoolExecutor(max_workers=min(concurrency, len(keys)), thread_name_prefix="bank-account")
    try:
        futures = {pool.submit(fn, key): key for key in keys}
        for future in as_completed(futures):
            try:
                yield futures[future], future.result()
            except BankPipelineError as exc:
                yield futures[future], exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _threads_for(engine: Engine, concurrency: int) -> int:
    """An in-memory SQLite database is one per connection: no threads there."""
    in_memory = engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:")
    return 1 if in_memory else max(1, concurrency)


def _carries_on_past_failures(context: dg.AssetExecutionContext) -> bool:
    """Whether the others go on when one account fails: only in the daily schedule's and the
    webhook sensor's grouped runs (tag `bank_pipeline/accounts`), and only if the run reaches the
    enrich step, which fails the run for the earlier failures. Backfills and imports stop at the
    failing step, so every partition of the run shows as failed, in every stage."""
    if ACCOUNTS_TAG not in context.run.tags:
        return False
    selection = context.run.asset_selection
    return not selection or enriched_transactions.key in selection  # empty: the whole job


def run_per_account(
    context: dg.AssetExecutionContext,
    engine: Engine,
    stage: str,
    work: Callable[[dict, list[dt.date]], object],
    per_day: Callable[[dict, list[dt.date]], dict[dt.date, dict]] | None = None,
    *,
    concurrency: int = 1,
) -> dg.MaterializeResult:
    """Run `work(account, days)` for each account in the run, holding that account's lease.

    The run takes each account's lease before any work, in account-key order (one global order, so
    two runs over overlapping accounts never wait on each other in a cycle); the lease is
    re-entrant across the run's stages and released when `enrich` ends or the run fails, so two
    runs never import the same account at once. `concurrency` accounts are worked on at once, on
    threads (the fetch step: bank calls wait on the network); the database engine gives each
    thread its own connection, and SQLite writers queue on its busy timeout.

    An expected, per-account problem (consent expired, budget exhausted, bank limits) is recorded
    on the account. In a backfill or an import — or when every account failed — the step fails, so
    the run fails and Dagster shows its partitions as failed. In the daily grouped runs the
    others carry on to the ledger (their partitions' metadata names the failure of the rest), later
    steps skip the failed accounts, and `enrich` then fails the run naming them: a failure never
    hides behind another account's success, and one expired consent does not hold back a group's
    other accounts. Dagster cannot fail some partitions of one step and materialize the others:
    a step's partitions succeed or fail together.

    The step's metadata holds run totals, named `run_…`; `per_day(account, days)` adds each
    partition's own figures.
    """
    from bank_pipeline.limits import acquire_lease

    started = time.perf_counter()
    grouped = days_by_account(context.partition_keys)
    accounts = _accounts_for(engine, list(grouped))
    skipped = [key for key in grouped if accounts[key]["last_failure_run_id"] == context.run_id]
    for key in skipped:
        context.log.warning(f"{stage} {key}: skipped, it failed earlier in this run")
    totals: Counter = Counter()
    failures: dict[str, str] = {}

    def fail(key: str, exc: Exception) -> None:
        failures[key] = str(exc)
        context.log.error(f"{stage} {key} ({accounts[key]['display_name']}): {exc}")
        _record_failure(engine, accounts[key]["id"], context.run_id, f"{stage}: {exc}")

    held = []
    deadline = time.monotonic() + LEASE_WAIT_SECONDS
    for key in sorted(set(grouped) - set(skipped)):
        try:
            acquire_lease(engine, accounts[key]["id"], context.run_id, ttl_seconds=LEASE_TTL_SECONDS,
                          wait_seconds=max(0.0, deadline - time.monotonic()))
        except BankPipelineError as exc:
            fail(key, exc)
            continue
        held.append(key)
    if held:  # when this step's exclusive hold began (the run's event log is the lease's history)
        context.log.info(f"{stage}: holding the lease on {len(held)} account(s): {', '.join(held)}")

    per_partition = len(context.partition_keys) <= PER_PARTITION_METADATA_MAX
    outcomes = _map_accounts(lambda key: work(accounts[key], grouped[key]), held, _threads_for(engine, concurrency))
    for key, stats in outcomes:
        if isinstance(stats, BankPipelineError):
            fail(key, stats)
            continue
        days = grouped[key]
        for name, value in stats.as_metadata().items():
            totals[name] += value
        context.log.debug(f"{stage} {key}: {len(days)} day(s) {stats.as_metadata()}")
        if per_day is not None and per_partition:
            for day, figures in per_day(accounts[key], days).items():
                context.add_asset_metadata(figures, partition_key=partition_key(key, day))
    imported = len(held) - len(failures.keys() & set(held))
    if failures and (imported == 0 or not _carries_on_past_failures(context)):
        detail = "; ".join(f"{key}: {message}" for key, message in failures.items())
        keep_landed(context, context.partition_keys, f"{stage} failed in this run: {detail}")
        raise dg.Failure(
            description=f"{stage} failed for {len(failures)} of {len(grouped)} account(s): {detail}",
            metadata={"failed_accounts": dg.MetadataValue.json(failures)},
            allow_retries=False,
        )
    for key, message in failures.items() if per_partition else ():  # the run fails at its end (enrich)
        for day in grouped[key]:
            context.add_asset_metadata({"failed": f"{stage}: {message}"}, partition_key=partition_key(key, day))
    metadata: dict[str, object] = {f"run_{name}": value for name, value in totals.items()}
    metadata.update(
        run_accounts=len(grouped),
        run_partitions=len(context.partition_keys),
        run_seconds=round(time.perf_counter() - started, 3),
    )
    if failures or skipped:
        metadata["run_failed_accounts"] = len(failures) + len(skipped)
    if not per_partition:
        metadata["per_partition_metadata"] = (
            f"left out: {len(context.partition_keys)} partitions in this run (more than "
            f"{PER_PARTITION_METADATA_MAX}); the figures above are the run's totals"
        )
    return dg.MaterializeResult(metadata=metadata)


def keep_landed(context: dg.AssetExecutionContext, partition_keys: list[str], reason: str) -> int:
    """Keep green what a failing step cannot change: for this asset and the run's later stages, a
    partition materialized before this run (its days are in the ledger) gets a materialization
    saying so, so Dagster does not show it failed. Only days not in the ledger show as failed.
    Returns the materializations logged."""
    order = [asset.key for asset in transaction_assets]
    selection = set(context.run.asset_selection or order)
    later = [key for key in order[order.index(context.asset_key):] if key in selection]
    wanted = {str(key) for key in partition_keys}
    logged = 0
    for asset_key in later:
        landed = wanted & set(context.instance.get_materialized_partitions(asset_key))
        for key in sorted(landed):
            context.log_event(dg.AssetMaterialization(
                asset_key=asset_key, partition=key,
                metadata={"kept": f"already in the ledger; not changed by this run ({reason})"[:500]}))
            logged += 1
    if logged:
        context.log.info(f"{logged} partition(s) already in the ledger stay materialized")
    return logged


def _fetch_options(context: dg.AssetExecutionContext, truelayer: TrueLayerResource) -> dict:
    """How this run treats landed days and the budget, from its tags.

    Scheduled and sensor runs are the daily import: they may spend the whole unattended budget.
    Any other run (a UI backfill, `bank-pipeline import`) keeps `backfill_reserve` calls for it.
    A look-back day fetched within `refetch_after_hours` is replayed, except in a webhook's run:
    the bank just said that something changed.
    """
    from bank_pipeline.ingest.fetch import fresh_since

    tags = context.run.tags
    daily = SCHEDULE_TAG in tags or SENSOR_TAG in tags
    return dict(
        mode=tags.get(FETCH_MODE_TAG, "auto"),
        settled_before=clock.today_in(truelayer.timezone) - dt.timedelta(days=truelayer.lookback_days),
        fresh_since=None if SENSOR_TAG in tags else fresh_since(truelayer.refetch_after_hours),
        budget_keep=0 if daily else truelayer.backfill_reserve,
    )


@_stage(
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
    options = _fetch_options(context, truelayer)

    def fetch(account: dict, days: list[dt.date]):
        # A client per account: its budget hook is per account, and accounts run on threads.
        client = truelayer.client_for(engine, account["connection_id"])
        try:
            return fetch_account_days(
                engine,
                client,
                account,
                days,
                run_id=context.run_id,
                max_window_days=truelayer.max_window_days,
                budget=budget,
                **options,
            )
        finally:
            close = getattr(client, "close", None)
            if close is not None:
                close()

    result = run_per_account(
        context, engine, "fetch", fetch, lambda account, days: raw_rows_by_day(engine, account["id"], days),
        concurrency=truelayer.fetch_concurrency,
    )
    from bank_pipeline.connections import consent_warnings

    for warning in consent_warnings(engine, within_days=CONSENT_WARNING_DAYS):
        context.log.warning(warning)  # in the run's log, ahead of the consent running out
    return result


@_stage(after=fetched_transactions, description="Validated, typed rows (signed amounts, UTC instants, booking dates); the rest quarantined.")
def normalized_transactions(context: dg.AssetExecutionContext, database: AppDatabase) -> dg.MaterializeResult:
    from bank_pipeline.ingest.normalize import normalize_account_days

    engine = database.get_engine()
    return run_per_account(
        context, engine, "normalize", lambda account, days: normalize_account_days(engine, account["id"], days)
    )


@_stage(after=normalized_transactions, description="Each row's dedup key (normalised id → provider id → content hash) and new/duplicate verdict.")
def deduplicated_transactions(context: dg.AssetExecutionContext, database: AppDatabase) -> dg.MaterializeResult:
    from bank_pipeline.ingest.dedup import dedup_account_days

    engine = database.get_engine()
    return run_per_account(
        context, engine, "dedup", lambda account, days: dedup_account_days(engine, account["id"], days)
    )


@_stage(after=deduplicated_transactions, description="The ledger: booked transactions inserted idempotently; the pending set replaced.")
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


@_stage(after=loaded_transactions, description="Category, merchant, essential/discretionary… from rules, the cache, then a model.")
def enriched_transactions(
    context: dg.AssetExecutionContext, database: AppDatabase, enrichment_model: EnrichmentModel
) -> dg.MaterializeResult:
    from bank_pipeline.enrich import enrich_account_days
    from bank_pipeline.limits import acquire_lease, release_leases

    started = time.perf_counter()
    engine = database.get_engine()
    grouped = days_by_account(context.partition_keys)
    accounts = _accounts_for(engine, list(grouped))
    # Accounts an earlier step of this run failed for (a run over many accounts carried on without them).
    failed = {key: accounts[key]["last_failure_message"] for key in grouped
              if accounts[key]["last_failure_run_id"] == context.run_id}
    wanted = {key: days for key, days in grouped.items() if key not in failed}
    try:
        for key in sorted(wanted):
            acquire_lease(engine, accounts[key]["id"], context.run_id, ttl_seconds=LEASE_TTL_SECONDS,
                          wait_seconds=LEASE_WAIT_SECONDS)
        # One call for the whole run, so model batches span every partition in it.
        stats = enrich_account_days(
            engine,
            {accounts[key]["id"]: days for key, days in wanted.items()},
            enrichment_model.build(),
            run_id=context.run_id,
        )
        context.log.info(f"enrich: {len(wanted)} account(s) done, releasing the run's leases")
    finally:
        release_leases(engine, context.run_id)  # the run's import of these accounts is over
    metadata = {f"run_{name}": value for name, value in stats.as_metadata().items()}
    metadata.update(run_accounts=len(grouped), run_seconds=round(time.perf_counter() - started, 3))
    if failed:
        context.log.debug(f"enrich: {len(wanted)} account(s) enriched {metadata}")
        detail = "; ".join(f"{key}: {message}" for key, message in failed.items())
        # The accounts this run imported are in the ledger, enriched: their days stay green.
        for key, days in wanted.items():
            for day in days:
                context.log_event(dg.AssetMaterialization(
                    asset_key=context.asset_key, partition=partition_key(key, day), metadata=metadata))
        failed_keys = [partition_key(key, day) for key in failed for day in grouped[key]]
        keep_landed(context, failed_keys, f"the import failed in this run: {detail}")
        raise dg.Failure(
            description=f"the import failed for {len(failed)} of {len(grouped)} account(s) (the others "
            f"were imported): {detail}",
            metadata={"failed_accounts": dg.MetadataValue.json(failed), **metadata},
            allow_retries=False,
        )
    return dg.MaterializeResult(metadata=metadata)


transaction_assets = [
    fetched_transactions,
    normalized_transactions,
    deduplicated_transactions,
    loaded_transactions,
    enriched_transactions,
]
