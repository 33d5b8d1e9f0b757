"""Sensors: webhook events → runs, account partitions in step with the database, failures recorded,
and the ledger checked after a run that failed before its checks."""


import datetime as dt
from collections import defaultdict

import dagster as dg
import sqlalchemy as sa
from sqlalchemy import Engine

from bank_pipeline.config import partition_start_date
from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import accounts
from bank_pipeline.errors import failure_line
from bank_pipeline.orchestration.checks import CHECKS_AFTER_TAG, checks_after_failure, ledger_checks_job
from bank_pipeline.orchestration.jobs import import_transactions
from bank_pipeline.orchestration.partitions import (
    ACCOUNTS_PARTITIONS_NAME,
    account_keys_from_tags,
    account_partitions,
    group_range_tags,
    last_complete_day,
    range_tags,
)
from bank_pipeline.orchestration.resources import AppDatabase, TrueLayerResource

WEBHOOK_EVENTS_PER_TICK = 100
# The webhook sensor looks as often as Dagster's sensor daemon can (its loop runs every 5 s at
# most): a "transactions available" webhook is meant to make the ledger fresh within seconds, and
# a tick with no event is one indexed query. The others need no hurry.
WEBHOOK_SENSOR_INTERVAL_SECONDS = 5
SENSOR_INTERVAL_SECONDS = 30


def _import_sensor(description: str, interval: int = SENSOR_INTERVAL_SECONDS):
    """A sensor that requests import runs, ticking every `interval` s, on from the start."""
    return dg.sensor(
        job=import_transactions,
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=description,
    )


def _parse_day(value, default: dt.date | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)[:10]) if value else default
    except ValueError:
        return default


def webhook_run_plan(
    engine: Engine, events: list[dict], today: dt.date, lookback_days: int, start: dt.date | None = None
) -> tuple[dict[str, tuple[dt.date, dt.date, list[str]]], dict[str, tuple[dt.date, dt.date, list[str]]], list[str]]:
    """Group events by account into one date range each: (plan, far, unknown event ids).

    `from` and `to` come from a signed body but are not trusted: a range is clamped to the
    partitions (`start`, the first day partition, to `today`). An event that asked for days before
    `start` (`"from": "0001-01-01"`) is planned apart in `far`, so it never widens the run that
    carries the account's genuine events.
    """
    provider_ids = {e.get("provider_account_id") for e in events if e.get("provider_account_id")}
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(accounts.c.provider_account_id, accounts.c.account_key).where(
                accounts.c.provider_account_id.in_(provider_ids), accounts.c.active.is_(True)
            )
        )
        key_by_provider_id = {row.provider_account_id: row.account_key for row in rows}
    start = start or dt.date.min + dt.timedelta(days=lookback_days)
    plans: tuple[dict[str, list], dict[str, list]] = (
        defaultdict(lambda: [None, None, []]), defaultdict(lambda: [None, None, []])
    )
    unknown = []
    for event in events:
        key = key_by_provider_id.get(event.get("provider_account_id"))
        if key is None:
            unknown.append(event["event_id"])
            continue
        payload = event.get("payload") if isinstance(event.get("payload"), dict) else {}
        last = min(_parse_day(payload.get("to"), today), today)
        far = last < start
        last = max(last, start)
        first = _parse_day(payload.get("from"), None) or last - dt.timedelta(days=lookback_days)
        far = far or (payload.get("from") is not None and first < start)
        first = min(max(first, start), last)
        entry = plans[far][key]
        entry[0] = first if entry[0] is None else min(entry[0], first)
        entry[1] = last if entry[1] is None else max(entry[1], last)
        entry[2].append(event["event_id"])
    plan, far_plan = ({key: (v[0], v[1], v[2]) for key, v in part.items()} for part in plans)
    return plan, far_plan, unknown


def group_webhook_plan(
    plan: dict[str, tuple[dt.date, dt.date, list[str]]], partition_order: list[str], per_run: int
) -> list[tuple[list[str], dt.date, dt.date, list[str]]]:
    """Runs for a webhook plan: (accounts, first, last, event ids), at most `per_run` accounts each.

    A run's partitions are a rectangle (consecutive accounts in `partition_order` × days), so only
    accounts next to each other in that order and asking for the same days share a run; nothing is
    fetched that no event asked for. An account not yet a partition gets a run of its own.
    """
    position = {key: i for i, key in enumerate(partition_order)}
    runs: list[tuple[list[str], dt.date, dt.date, list[str]]] = []
    ordered = sorted(plan, key=lambda k: (position.get(k, len(position)), k))
    for key in ordered:
        first, last, event_ids = plan[key]
        if runs and key in position:
            keys, run_first, run_last, run_events = runs[-1]
            if (
                len(keys) < per_run
                and (run_first, run_last) == (first, last)
                and position.get(keys[-1]) == position[key] - 1
            ):
                keys.append(key)
                run_events.extend(event_ids)
                continue
        runs.append(([key], first, last, list(event_ids)))
    return runs


@_import_sensor(
    description="Turns verified TrueLayer webhook events into import runs for the accounts they name.",
    interval=WEBHOOK_SENSOR_INTERVAL_SECONDS,
)
def webhook_events_sensor(context: dg.SensorEvaluationContext, database: AppDatabase, truelayer: TrueLayerResource):
    from bank_pipeline.webhooks.events import mark_processed, pending_events

    engine = database.get_engine()
    events = pending_events(engine, limit=WEBHOOK_EVENTS_PER_TICK)
    if not events:
        return dg.SkipReason("no new webhook events")
    today = last_complete_day(utcnow(), truelayer.timezone) + dt.timedelta(days=1)
    start = dt.date.fromisoformat(partition_start_date())
    plan, far, unknown = webhook_run_plan(engine, events, today, truelayer.lookback_days, start)
    if unknown:
        context.log.warning(f"webhook events for unknown accounts, ignored: {unknown}")
        mark_processed(engine, unknown, "ignored:unknown-account")
    if far:
        context.log.warning(f"webhook events asking for days before {start}, clamped and run apart: "
                            f"{[e for _f, _l, ids in far.values() for e in ids]}")
    requests = []
    order = list(context.instance.get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME))
    grouped = [*group_webhook_plan(plan, order, truelayer.accounts_per_run),
               *group_webhook_plan(far, order, truelayer.accounts_per_run)]
    for keys, first, last, event_ids in grouped:
        run_key = f"webhook:{min(event_ids)}"
        requests.append(
            dg.RunRequest(
                run_key=run_key,
                tags={**group_range_tags(keys, first, last), "bank_pipeline/trigger": "webhook"},
            )
        )
        mark_processed(engine, event_ids, run_key)
    context.update_cursor(str(max(int(e["id"]) for e in events)))
    return requests


@_import_sensor(
    description="Adds an `account` partition for each newly connected account and backfills its history.",
)
def account_partitions_sensor(context: dg.SensorEvaluationContext, database: AppDatabase, truelayer: TrueLayerResource):
    engine = database.get_engine()
    with engine.connect() as conn:
        active = set(conn.execute(sa.select(accounts.c.account_key).where(accounts.c.active.is_(True))).scalars())
    known = set(context.instance.get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME))
    new = sorted(active - known)
    if not new:
        return dg.SkipReason("account partitions are in step with the connected accounts")
    last = last_complete_day(utcnow(), truelayer.timezone)
    first = last - dt.timedelta(days=truelayer.initial_backfill_days - 1)
    return dg.SensorResult(
        dynamic_partitions_requests=[account_partitions.build_add_request(new)],
        run_requests=[
            dg.RunRequest(
                run_key=f"initial:{key}",
                tags={**range_tags(key, first, last), "bank_pipeline/trigger": "new-account"},
            )
            for key in new
        ],
    )


def record_run_failure(engine: Engine, run_id: str, tags: dict[str, str], message: str) -> list[str]:
    """Store a failed run on the accounts it failed for, for `bank-pipeline status`; free its leases.

    Those are the accounts its steps recorded a failure on; when none did (a crash), every account
    the run touched.
    """
    from bank_pipeline.connections import record_failure
    from bank_pipeline.limits import release_leases

    release_leases(engine, run_id)
    with engine.begin() as conn:
        known = list(conn.execute(sa.select(accounts.c.account_key)).scalars())
        keys = account_keys_from_tags(tags, known)
        recorded = list(
            conn.execute(
                sa.select(accounts.c.account_key).where(
                    accounts.c.account_key.in_(keys), accounts.c.last_failure_run_id == run_id
                )
            ).scalars()
        )
        if recorded:
            # The run's steps named the accounts that failed (a run over many accounts imports the
            # others); each keeps the (more precise) reason its step recorded.
            return sorted(recorded)
        if keys:
            record_failure(
                conn,
                run_id,
                message,
                accounts.c.account_key.in_(keys),
                sa.or_(accounts.c.last_failure_run_id.is_(None), accounts.c.last_failure_run_id != run_id),
            )
    return keys


def step_failure_reason(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The first failed step's own explanation (a `Failure` description), if any."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE, limit=1).records
    for record in records:
        data = record.event_log_entry.dagster_event.step_failure_data
        if data.user_failure_data and data.user_failure_data.description:
            return data.user_failure_data.description
        if data.error:
            return failure_line(data.error)
    return None


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records each failed run (schedule, sensor or UI backfill) on the accounts it touched.",
)
def record_failures_sensor(context: dg.RunFailureSensorContext, database: AppDatabase):
    run = context.dagster_run
    message = step_failure_reason(context.instance, run.run_id) or context.failure_event.message or "run failed"
    keys = record_run_failure(database.get_engine(), run.run_id, dict(run.tags), message)
    context.log.info(f"recorded failure of run {run.run_id} on accounts {keys}")


# Failed runs the sensor's first tick still looks at (later ticks start where the last one ended).
CHECKS_AFTER_FAILURE_LOOKBACK = dt.timedelta(hours=24)


@dg.sensor(
    job=ledger_checks_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After runs that failed before their ledger checks ran, runs them over each one's partitions, so "
    "the checks show the ledger's state instead of Dagster's 'Execution failed': every failed run in one tick.",
)
def ledger_checks_after_failure_sensor(context: dg.SensorEvaluationContext):
    """Dagster's run-failure sensors answer one failed run per tick (a backfill's nine failed runs
    took nine 30 s ticks to settle the Checks tab); this one answers every run that failed since
    the last tick. The run key (one per failed run) keeps a run from being checked twice."""
    since = float(context.cursor) if context.cursor else (utcnow() - CHECKS_AFTER_FAILURE_LOOKBACK).timestamp()
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], updated_after=dt.datetime.fromtimestamp(since - 5, dt.timezone.utc)),
        order_by="update_timestamp",
        ascending=True,
    )
    requests = []
    newest = since
    for record in records:
        newest = max(newest, record.update_timestamp.timestamp())
        tags = checks_after_failure(context.instance, record.dagster_run)
        if tags is not None:
            requests.append(dg.RunRequest(run_key=f"{CHECKS_AFTER_TAG}:{record.dagster_run.run_id}", tags=tags))
    return dg.SensorResult(run_requests=requests, cursor=str(newest))
