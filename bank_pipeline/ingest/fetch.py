"""Fetch an account's transactions for any set of days and land them verbatim.

Days are coalesced into contiguous ranges and each range is split into windows the bank accepts:
one API call per window (a year-long backfill with 90-day windows is 5 calls, not 365), plus one
pending call when the range reaches today. Every response lands in `raw_fetches` (body exactly as
received) and `raw_transactions` (one row per result), so later stages can be replayed.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine

from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import raw_fetches, raw_transactions
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.ingest._db import (
    as_days,
    bulk_insert,
    fresh_fetches,
    latest_booked_fetches,
    latest_pending_fetch,
    write_transaction,
)
from bank_pipeline.ingest.normalize import local_date
from bank_pipeline.ingest.text import clean_text
from bank_pipeline.truelayer.errors import TrueLayerError
from bank_pipeline.truelayer.windows import split_windows

# Pending transactions are fetched when the requested days reach this close to today.
PENDING_NEAR_TODAY_DAYS = 7
# How a run treats days that already landed: see `days_to_fetch`.
FETCH_MODES = ("auto", "landed", "refetch")


@dataclass
class FetchStats:
    api_calls: int = 0  # HTTP requests, retries included
    windows: int = 0  # booked-transaction windows fetched
    booked_rows: int = 0
    pending_rows: int = 0
    ranges: int = 0  # contiguous day ranges the days coalesced into
    replayed_days: int = 0  # days served from what already landed, with no bank call

    def as_metadata(self) -> dict[str, int]:
        return asdict(self)


def coalesce_days(days: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Contiguous inclusive (first, last) ranges covering exactly the given days."""
    ranges: list[list[dt.date]] = []
    for day in as_days(days):
        if ranges and ranges[-1][1] + dt.timedelta(days=1) == day:
            ranges[-1][1] = day
        else:
            ranges.append([day, day])
    return [(a, b) for a, b in ranges]


def plan_windows(days: list[dt.date], max_window_days: int = 90) -> list[tuple[dt.date, dt.date]]:
    """The (from, to) windows fetched for `days`: coalesced ranges, each split by split_windows."""
    windows: list[tuple[dt.date, dt.date]] = []
    for start, end in coalesce_days(days):
        windows.extend(split_windows(start, end, max_window_days))
    return windows


def _land(
    engine: Engine,
    account_id: int,
    kind: str,
    window: tuple[dt.date, dt.date],
    run_id: str | None,
    *,
    response: Any = None,
    error: TrueLayerError | None = None,
) -> int:
    """One raw_fetches row and its raw_transactions rows, in one transaction. Returns rows landed."""
    fetch = dict(
        account_id=account_id,
        kind=kind,
        window_from=window[0],
        window_to=window[1],
        run_id=run_id,
        fetched_at=utcnow(),
    )
    if error is not None:
        fetch.update(
            # The message may quote a hostile body (a NUL): PostgreSQL text cannot hold it.
            http_status=error.status_code, api_calls=getattr(error, "attempts", 1) or 1, error=clean_text(str(error))
        )
    else:
        fetch.update(http_status=response.http_status, api_calls=response.attempts or 1, body=response.body)
    results = list(response.results or []) if response is not None else []
    with write_transaction(engine) as conn:
        fetch_id = conn.execute(raw_fetches.insert().values(**fetch).returning(raw_fetches.c.id)).scalar_one()
        rows = []
        status = "pending" if kind == "pending" else "booked"
        for position, item in enumerate(results):
            stamp = item.get("timestamp") if isinstance(item, dict) else None
            rows.append(
                dict(
                    fetch_id=fetch_id,
                    account_id=account_id,
                    status=status,
                    position=position,
                    partition_date=local_date(stamp) or window[1],
                    payload=json.dumps(item),
                )
            )
        bulk_insert(conn, raw_transactions, rows)
    return len(results)


class FetchDeferred(BankPipelineError):
    """Today's unattended budget ran out: some windows were fetched and landed, the rest wait."""

    def __init__(self, message: str, *, deferred: list[tuple[dt.date, dt.date]], resets_at: dt.datetime) -> None:
        super().__init__(message)
        self.deferred = deferred
        self.resets_at = resets_at


def fresh_since(refetch_after_hours: int) -> dt.datetime | None:
    """Fetches that landed at or after this instant are recent enough to replay (None: never)."""
    from bank_pipeline import clock

    return clock.now() - dt.timedelta(hours=refetch_after_hours) if refetch_after_hours > 0 else None


def days_to_fetch(
    engine: Engine,
    account_id: int,
    days: list[dt.date],
    *,
    mode: str,
    settled_before: dt.date | None,
    fresh_since: dt.datetime | None = None,
) -> list[dt.date]:
    """The days that need the bank; the others are replayed from the raw store (0 calls).

    `auto`: a settled day (before `settled_before`, outside the look-back window where late postings
    still arrive) already covered by a landed fetch is replayed, and so is a look-back day whose
    latest fetch landed at or after `fresh_since` (attended or not): the bank has just answered for
    it, and asking again minutes later would spend the day's unattended calls on the same days.
    `landed`: every covered day is replayed (e.g. right after connect-time history landed).
    `refetch`: everything is fetched.
    """
    if mode not in FETCH_MODES:
        raise BankPipelineError(f"fetch mode must be one of {', '.join(FETCH_MODES)}, got {mode!r}")
    if mode == "refetch" or not days:
        return days
    with engine.connect() as conn:
        covered = latest_booked_fetches(conn, account_id, days)
        fresh = fresh_fetches(conn, set(covered.values()), fresh_since) if fresh_since is not None else set()
    if mode == "landed":
        return [d for d in days if d not in covered]
    return [
        d for d in days
        if d not in covered or (covered[d] not in fresh and (settled_before is None or d >= settled_before))
    ]


def has_landed_pending(engine: Engine, account_id: int) -> bool:
    with engine.connect() as conn:
        return latest_pending_fetch(conn, account_id) is not None


def fetch_account_days(
    engine: Engine,
    client: Any,
    account: dict,
    days: list[dt.date],
    *,
    run_id: str | None,
    max_window_days: int = 90,
    include_pending: bool = True,
    budget: Any = None,
    budget_keep: int = 0,
    today: dt.date | None = None,
    mode: str = "refetch",
    settled_before: dt.date | None = None,
    fresh_since: dt.datetime | None = None,
) -> FetchStats:
    """Fetch and land `account`'s transactions for `days` (one call per window).

    `account` is an `accounts` row as a dict (`id`, `kind`, `provider_account_id`, …). Days that
    `mode` lets us replay from what already landed are not fetched (see `days_to_fetch`). Before
    every unattended attempt (no `client.psu_ip`; retries included) `budget.reserve(account_id, 1,
    keep=budget_keep)` is called if a budget is given; when it runs out, the windows fetched so far
    stay landed and FetchDeferred names the rest. A TrueLayer error lands a raw_fetches row with the
    error and is re-raised; windows fetched before it stay landed.
    """
    from bank_pipeline.limits import BudgetExhausted

    account_id = account["id"]
    kind = account["kind"]
    provider_account_id = account["provider_account_id"]
    today = today or utcnow().date()
    days = as_days(days)
    stats = FetchStats()
    if not days:
        return stats
    wanted = days_to_fetch(engine, account_id, days, mode=mode, settled_before=settled_before, fresh_since=fresh_since)
    stats.replayed_days = len(days) - len(wanted)
    stats.ranges = len(coalesce_days(wanted))
    unattended = not getattr(client, "psu_ip", None)

    def reserve() -> None:
        budget.reserve(account_id, 1, keep=budget_keep)

    def call(window, kind_: str, fn, *args):
        client.before_attempt = reserve if budget is not None and unattended else None
        try:
            response = fn(*args)
        except TrueLayerError as exc:
            stats.api_calls += getattr(exc, "attempts", 1) or 1
            _land(engine, account_id, kind_, window, run_id, error=exc)
            raise
        finally:
            client.before_attempt = None
        stats.api_calls += response.attempts or 1
        return _land(engine, account_id, kind_, window, run_id, response=response)

    windows = plan_windows(wanted, max_window_days)
    # The pending set is refreshed with the days near today; a run that replays every one of its
    # days (settled, landed) keeps the pending set that landed with them and makes no call.
    want_pending = include_pending and days[-1] >= today - dt.timedelta(days=PENDING_NEAR_TODAY_DAYS)
    if want_pending and mode != "refetch" and not wanted and has_landed_pending(engine, account_id):
        want_pending = False
    try:
        for window in windows:
            stats.booked_rows += call(window, "booked", client.transactions, kind, provider_account_id, *window)
            stats.windows += 1
        if want_pending:
            stats.pending_rows += call(
                (today, today), "pending", client.pending_transactions, kind, provider_account_id
            )
    except BudgetExhausted as exc:
        deferred = windows[stats.windows:]
        spans = ", ".join(f"{a}..{b}" for a, b in deferred) or "pending transactions"
        raise FetchDeferred(
            f"fetched {stats.windows} of {len(windows)} window(s); deferred {spans}: {exc}",
            deferred=deferred,
            resets_at=exc.resets_at,
        ) from None
    return stats
