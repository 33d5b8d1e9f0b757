"""Alert sensors: Dagster's run-status and sensor machinery tells the person when the pipeline or
the bank needs them (`bank_pipeline.alerts` does the work; these only wire it to Dagster).

Both run in the daemon, beside the runs: a channel that is down costs a sensor tick a few seconds
at most and never fails or delays a run; what was not delivered is retried on the next ticks.
"""

import dagster as dg
import sqlalchemy as sa

from bank_pipeline import clock
from bank_pipeline.alerts.causes import check_failure_alert, consent_alerts, needs_the_user, run_failure_alert
from bank_pipeline.alerts.outbox import deliver_due, raise_alert
from bank_pipeline.config import ConfigError
from bank_pipeline.db.schema import accounts
from bank_pipeline.orchestration.partitions import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    SCHEDULE_TAG,
    SENSOR_TAG,
    account_keys_from_tags,
)
from bank_pipeline.orchestration.resources import AlertChannels, AppDatabase
from bank_pipeline.orchestration.sensors import step_failure_reason

BACKFILL_TAG = "dagster/backfill"
PARTITION_TAG = "dagster/partition"
ALERT_TICK_SECONDS = 60
CHECK_EVENTS_PER_RUN = 10_000


def _deliver(engine, alert_channels: AlertChannels, log) -> str:
    try:
        channels = alert_channels.channels()
    except ConfigError as exc:  # names the variable and position, never the URL
        log.error(str(exc))
        return "channels misconfigured"
    if not channels:
        return "no channel configured (BANK_PIPELINE_ALERT_URLS)"
    delivery = deliver_due(engine, channels)
    return f"{delivery.sent} delivered, {delivery.failed} left to retry"


def _partitions(tags: dict[str, str]) -> str | None:
    if RANGE_START_TAG in tags:
        return f"{tags[RANGE_START_TAG]} .. {tags.get(RANGE_END_TAG, '?')}"
    return tags.get(PARTITION_TAG)


def _trigger(tags: dict[str, str]) -> str | None:
    for tag, what in ((SCHEDULE_TAG, "schedule"), (SENSOR_TAG, "sensor"), (BACKFILL_TAG, "backfill")):
        if tags.get(tag):
            return f"{what} {tags[tag]}"
    return None


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts the person (BANK_PIPELINE_ALERT_URLS) once per failed run, backfill or retried run, "
    "with the reason and the partitions.",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext, database: AppDatabase, alert_channels: AlertChannels):
    run = context.dagster_run
    tags = dict(run.tags)
    engine = database.get_engine()
    with engine.connect() as conn:
        known = list(conn.execute(sa.select(accounts.c.account_key)).scalars())
    if needs_the_user(engine, account_keys_from_tags(tags, known)):
        # The consent ended: one alert for the connection (its cause), not one per failed run.
        raised = sum(raise_alert(engine, alert) for alert in consent_alerts(engine, clock.now()))
        context.log.info(f"run {run.run_id} failed on an ended consent: {raised} new consent alert(s); "
                         f"{_deliver(engine, alert_channels, context.log)}")
        return
    reason = step_failure_reason(context.instance, run.run_id) or context.failure_event.message or "run failed"
    alert = run_failure_alert(
        run.run_id,
        run.root_run_id,
        run.job_name,
        reason,
        backfill_id=tags.get(BACKFILL_TAG),
        partitions=_partitions(tags),
        trigger=_trigger(tags),
    )
    new = raise_alert(engine, alert)
    check_alerts(context.instance, run, engine)
    context.log.info(f"run {run.run_id}: {'alert raised' if new else 'already alerted'}; {_deliver(engine, alert_channels, context.log)}")


def check_alerts(instance: dg.DagsterInstance, run: dg.DagsterRun, engine) -> int:
    """The run's failed asset check evaluations (the run's own result and each partition's): one
    alert per check and run; returns how many alerts are new."""
    records = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, limit=CHECK_EVENTS_PER_RUN
    ).records
    raised = 0
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if evaluation.passed:
            continue
        alert = check_failure_alert(
            evaluation.asset_key.to_user_string(),
            evaluation.check_name,
            run.run_id,
            run.root_run_id,
            warning=evaluation.severity == dg.AssetCheckSeverity.WARN,
            partition=evaluation.partition,
            description=evaluation.description,
        )
        raised += raise_alert(engine, alert)
    return raised


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts the person once per ledger check that failed in a run (its partitions share the alert).",
)
def alert_on_failed_checks(context: dg.RunStatusSensorContext, database: AppDatabase, alert_channels: AlertChannels):
    engine = database.get_engine()
    raised = check_alerts(context.instance, context.dagster_run, engine)
    if raised:
        context.log.info(f"run {context.dagster_run.run_id}: {raised} check alert(s); "
                         f"{_deliver(engine, alert_channels, context.log)}")


@dg.sensor(
    minimum_interval_seconds=ALERT_TICK_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Warns 14, 7 and 1 day(s) before a bank consent ends and when it has ended (once each), "
    "and retries alerts a channel could not take.",
)
def alerts_sensor(context: dg.SensorEvaluationContext, database: AppDatabase, alert_channels: AlertChannels):
    engine = database.get_engine()
    raised = sum(raise_alert(engine, alert) for alert in consent_alerts(engine, clock.now()))
    return dg.SkipReason(f"{raised} new alert(s); {_deliver(engine, alert_channels, context.log)}")
