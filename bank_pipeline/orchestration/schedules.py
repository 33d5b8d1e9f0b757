"""The daily import: every account, yesterday plus a look-back window for late postings.

Accounts go into runs of up to `BANK_PIPELINE_ACCOUNTS_PER_RUN` (default 50), so the number of
runs — about 3 s of Dagster overhead each — grows with the work, not with the accounts: 1,000
accounts are 20 runs. Groups are consecutive slices of the instance's `account` partitions (a
run's partitions are a rectangle, see `group_range_tags`); within a run the fetch step calls the
bank for several accounts at once (`BANK_PIPELINE_FETCH_CONCURRENCY`), and the run holds every
account it covers through the application database's leases.
"""


import datetime as dt

import dagster as dg

from bank_pipeline import clock
from bank_pipeline.config import Settings
from bank_pipeline.orchestration.jobs import import_transactions
from bank_pipeline.orchestration.partitions import (
    ACCOUNTS_PARTITIONS_NAME,
    group_accounts,
    group_range_tags,
    last_complete_day,
)
from bank_pipeline.orchestration.resources import TrueLayerResource


def daily_run_requests(
    account_keys: list[str],
    tick: dt.datetime,
    timezone: str,
    lookback_days: int,
    accounts_per_run: int = 1,
) -> list[dg.RunRequest]:
    """Runs of up to `accounts_per_run` accounts, each covering the daily window.

    `account_keys` in the instance's partition order (`get_dynamic_partitions`): each run covers a
    consecutive slice of it. With 1, one run per account, as the queue's per-account tag limit
    expects (the tag a single-account run carries).
    """
    last = last_complete_day(tick, timezone)
    first = last - dt.timedelta(days=lookback_days)
    requests = []
    for group in group_accounts(list(account_keys), accounts_per_run):
        name = group[0] if len(group) == 1 else f"{group[0]}..{group[-1]}"
        requests.append(
            dg.RunRequest(
                run_key=f"daily:{name}:{last.isoformat()}",
                tags={**group_range_tags(group, first, last), "bank_pipeline/trigger": "schedule"},
            )
        )
    return requests


# When the schedule fires is part of its definition (Dagster's daemon reads it without running
# code): cron and time zone come from the validated settings when the definitions load. What a
# tick requests comes from the `truelayer` resource, like the sensors'.
_settings = Settings.from_env()


@dg.schedule(
    cron_schedule=_settings.schedule_cron,
    job=import_transactions,
    execution_timezone=_settings.timezone,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily import of every account: yesterday plus the look-back window (late postings).",
)
def daily_import_schedule(context: dg.ScheduleEvaluationContext, truelayer: TrueLayerResource):
    keys = context.instance.get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME)
    if not keys:
        return dg.SkipReason("no accounts registered yet: run `bank-pipeline connect`")
    # Dagster's daemon schedules ticks on the wall clock; the days they import are the pipeline's.
    scheduled = context.scheduled_execution_time
    tick = clock.from_wall(scheduled) if scheduled else clock.now()
    return daily_run_requests(keys, tick, truelayer.timezone, truelayer.lookback_days, truelayer.accounts_per_run)
