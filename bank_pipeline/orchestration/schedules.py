"""The daily import: every account, yesterday plus a look-back window for late postings."""


import datetime as dt

import dagster as dg

from bank_pipeline import clock
from bank_pipeline.config import Settings
from bank_pipeline.orchestration.jobs import import_transactions
from bank_pipeline.orchestration.partitions import (
    ACCOUNTS_PARTITIONS_NAME,
    last_complete_day,
    range_tags,
)


def daily_windows(
    account_keys: list[str], tick: dt.datetime, timezone: str, lookback_days: int
) -> list[tuple[str, dt.date, dt.date]]:
    """(account, first day, last day) per account: the last complete day and `lookback_days` before it."""
    last = last_complete_day(tick, timezone)
    first = last - dt.timedelta(days=lookback_days)
    return [(key, first, last) for key in sorted(account_keys)]


def daily_run_requests(
    account_keys: list[str], tick: dt.datetime, timezone: str, lookback_days: int
) -> list[dg.RunRequest]:
    """One run per account (so the queue's one-run-per-account limit applies), covering its window."""
    return [
        dg.RunRequest(
            run_key=f"daily:{key}:{last.isoformat()}",
            tags={**range_tags(key, first, last), "bank_pipeline/trigger": "schedule"},
        )
        for key, first, last in daily_windows(account_keys, tick, timezone, lookback_days)
    ]


_settings = Settings.from_env()


@dg.schedule(
    cron_schedule=_settings.schedule_cron,
    job=import_transactions,
    execution_timezone=_settings.timezone,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily import of every account: yesterday plus the look-back window (late postings).",
)
def daily_import_schedule(context: dg.ScheduleEvaluationContext):
    keys = context.instance.get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME)
    if not keys:
        return dg.SkipReason("no accounts registered yet: run `bank-pipeline connect`")
    tick = context.scheduled_execution_time or clock.now()
    return daily_run_requests(keys, tick, _settings.timezone, _settings.lookback_days)
