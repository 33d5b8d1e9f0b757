"""Transactions are partitioned by account × day; these helpers translate between the two worlds.

A run may cover any rectangle of (account, day) partitions: single-run backfills, the daily
schedule's look-back window, webhook-triggered ranges. Stages group the run's partition keys by
account and hand each account's days to the plain ingest functions in one call, which then
coalesce them into as few TrueLayer calls as the bank allows.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections import defaultdict
from collections.abc import Iterable

import dagster as dg

from bank_pipeline.config import partition_start_date, partition_timezone

ACCOUNT_DIMENSION = "account"
DATE_DIMENSION = "date"
MONTH_DIMENSION = "month"
ACCOUNTS_PARTITIONS_NAME = "accounts"

# Run tags Dagster reads to execute a partition range in one run (as single-run backfills do).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# Our own tag: the run-queue limits one run per account at a time on this tag.
ACCOUNT_TAG = "bank_pipeline/account"
# Our own tag on a run over several accounts (comma-separated keys). A run carries one value per
# tag key and Dagster's tag limits match whole keys, so the queue cannot hold each of a group's
# accounts; the run holds them through the application database's leases instead (limits.py).
ACCOUNTS_TAG = "bank_pipeline/accounts"
# Our own tag: how the fetch step treats days that already landed (auto | landed | refetch).
FETCH_MODE_TAG = "bank_pipeline/fetch"
# Dagster's tags on runs started by a schedule or a sensor (the daily import).
SCHEDULE_TAG = "dagster/schedule_name"
SENSOR_TAG = "dagster/sensor_name"

account_partitions = dg.DynamicPartitionsDefinition(name=ACCOUNTS_PARTITIONS_NAME)
# end_offset=1: today's partition exists, so a webhook about today's transactions has a target;
# the daily schedule still re-reads it tomorrow within the look-back window.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=partition_start_date(), timezone=partition_timezone(), end_offset=1
)
transaction_partitions = dg.MultiPartitionsDefinition(
    {ACCOUNT_DIMENSION: account_partitions, DATE_DIMENSION: daily_partitions}
)
# Figures per month (monthly spending): the same accounts × calendar months of the same timezone.
# end_offset=1: the current month exists (its figures so far), like today's daily partition.
monthly_partitions = dg.MonthlyPartitionsDefinition(
    start_date=partition_start_date()[:8] + "01", timezone=partition_timezone(), end_offset=1
)
account_month_partitions = dg.MultiPartitionsDefinition(
    {ACCOUNT_DIMENSION: account_partitions, MONTH_DIMENSION: monthly_partitions}
)
# Dagster still labels the multi-dimension mapping and the nonexistent-partitions flag beta.
warnings.filterwarnings("ignore", message="Class `MultiPartitionMapping`", category=dg.BetaWarning)
warnings.filterwarnings("ignore", message="Parameter `allow_nonexistent_upstream_partitions`", category=dg.BetaWarning)
# An account-month depends on the same account's days of that month, so Dagster maps a run (or a
# backfill) of days to exactly the months it touched. Days not in the partitions (after today,
# before the start date) are simply absent.
DAYS_TO_MONTHS = dg.MultiPartitionMapping(
    {
        ACCOUNT_DIMENSION: dg.DimensionPartitionMapping(ACCOUNT_DIMENSION, dg.IdentityPartitionMapping()),
        DATE_DIMENSION: dg.DimensionPartitionMapping(
            MONTH_DIMENSION, dg.TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True)
        ),
    }
)


def partition_key(account_key: str, day: dt.date) -> str:
    """The multi-partition key string for one account-day (dimensions in name order)."""
    return dg.MultiPartitionKey({ACCOUNT_DIMENSION: account_key, DATE_DIMENSION: day.isoformat()})


def days_by_account(partition_keys: Iterable[str]) -> dict[str, list[dt.date]]:
    """Group a run's multi-partition keys into {account_key: sorted days}."""
    grouped: dict[str, set[dt.date]] = defaultdict(set)
    for key in partition_keys:
        dims = key.keys_by_dimension if isinstance(key, dg.MultiPartitionKey) else _split(key)
        grouped[dims[ACCOUNT_DIMENSION]].add(dt.date.fromisoformat(dims[DATE_DIMENSION]))
    return {account: sorted(days) for account, days in sorted(grouped.items())}


def months_by_account(partition_keys: Iterable[str]) -> dict[str, list[dt.date]]:
    """Group account-month partition keys into {account_key: sorted months (first days)}."""
    grouped: dict[str, set[dt.date]] = defaultdict(set)
    for key in partition_keys:
        if isinstance(key, dg.MultiPartitionKey):
            account, month = key.keys_by_dimension[ACCOUNT_DIMENSION], key.keys_by_dimension[MONTH_DIMENSION]
        else:  # "<account>|<month>": dimension names sort as ("account", "month")
            account, _, month = key.partition("|")
        grouped[account].add(dt.date.fromisoformat(month))
    return {account: sorted(months) for account, months in sorted(grouped.items())}


def month_partition_key(account_key: str, month: dt.date) -> str:
    return dg.MultiPartitionKey({ACCOUNT_DIMENSION: account_key, MONTH_DIMENSION: month.replace(day=1).isoformat()})


def _split(key: str) -> dict[str, str]:
    # Dimension names sort as ("account", "date"), so the string key is "<account>|<date>".
    account, _, day = key.partition("|")
    return {ACCOUNT_DIMENSION: account, DATE_DIMENSION: day}


def range_tags(account_key: str, first: dt.date, last: dt.date) -> dict[str, str]:
    """Tags that make one run cover `first..last` for one account (inclusive)."""
    if last < first:
        raise ValueError(f"inverted date range {first} > {last}")
    return {
        RANGE_START_TAG: partition_key(account_key, first),
        RANGE_END_TAG: partition_key(account_key, last),
        ACCOUNT_TAG: account_key,
    }


def group_accounts(account_keys: list[str], per_run: int) -> list[list[str]]:
    """Consecutive groups of at most `per_run` accounts, in the order given."""
    if per_run < 1:
        raise ValueError(f"accounts per run must be at least 1, got {per_run}")
    return [account_keys[i : i + per_run] for i in range(0, len(account_keys), per_run)]


def group_range_tags(account_keys: list[str], first: dt.date, last: dt.date) -> dict[str, str]:
    """Tags that make one run cover `first..last` for every account in `account_keys`.

    A run's partitions are a rectangle: the accounts from the first key to the last in the
    instance's `account` partition order (the order they were added), times the days. So the keys
    must be consecutive in that order (a slice of `get_dynamic_partitions`), or the run covers
    the accounts in between too. One account: exactly `range_tags` (the queue's per-account limit).
    """
    if not account_keys:
        raise ValueError("a run needs at least one account")
    if len(account_keys) == 1:
        return range_tags(account_keys[0], first, last)
    if last < first:
        raise ValueError(f"inverted date range {first} > {last}")
    return {
        RANGE_START_TAG: partition_key(account_keys[0], first),
        RANGE_END_TAG: partition_key(account_keys[-1], last),
        ACCOUNTS_TAG: ",".join(account_keys),
    }


def account_keys_from_tags(tags: dict[str, str], known_keys: Iterable[str]) -> list[str]:
    """Which accounts a run touches, from its partition tags (single key, range or our own tags)."""
    if ACCOUNTS_TAG in tags:
        return [key for key in tags[ACCOUNTS_TAG].split(",") if key]
    if ACCOUNT_TAG in tags:
        return [tags[ACCOUNT_TAG]]
    if "dagster/partition" in tags:
        return [_split(tags["dagster/partition"])[ACCOUNT_DIMENSION]]
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        first = _split(tags[RANGE_START_TAG])[ACCOUNT_DIMENSION]
        last = _split(tags[RANGE_END_TAG])[ACCOUNT_DIMENSION]
        return [key for key in sorted(known_keys) if first <= key <= last]
    return []


def days_from_tags(tags: dict[str, str]) -> tuple[dt.date, dt.date] | None:
    """The first and last day a run covers, from its partition tags (None: not a partition run)."""
    if "dagster/partition" in tags:
        day = dt.date.fromisoformat(_split(tags["dagster/partition"])[DATE_DIMENSION])
        return day, day
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        days = sorted(dt.date.fromisoformat(_split(tags[t])[DATE_DIMENSION]) for t in (RANGE_START_TAG, RANGE_END_TAG))
        return days[0], days[1]
    return None


def last_complete_day(now: dt.datetime, timezone: str) -> dt.date:
    """Yesterday in the partitions' timezone: today's partition is not complete yet."""
    from zoneinfo import ZoneInfo

    return (now.astimezone(ZoneInfo(timezone)) - dt.timedelta(days=1)).date()


def sync_account_partitions(instance: dg.DagsterInstance, account_keys: Iterable[str]) -> list[str]:
    """Register account keys as `account` partitions; returns the ones that were new.

    Safe when several processes register the same accounts at once: a key another process added
    first is simply already there.
    """
    existing = set(instance.get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME))
    new = sorted(set(account_keys) - existing)
    if not new:
        return []
    try:
        instance.add_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME, new)
    except Exception:  # a concurrent registration won the race: add what is still missing, one by one
        for key in new:
            if not instance.has_dynamic_partition(ACCOUNTS_PARTITIONS_NAME, key):
                instance.add_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME, [key])
    return new
