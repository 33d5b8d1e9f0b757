"""The pipeline's one clock: every "now" and "today" (budget day, pending window, schedule,
consent warnings, token expiry) is read here and nowhere else.

It is the wall clock, optionally shifted by `BANK_PIPELINE_CLOCK_OFFSET` seconds. The shift lives
in the environment so that every process of one deployment — the CLI, Dagster's run workers, the
daemon, the webhook receiver, the simulator — agrees on the same instant and the clock keeps
ticking (leases, token expiry and webhook timestamps stay consistent). Tests pin "now" with
`pinned(...)`, which sets the shift so that the clock reads the given instant at that moment.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

OFFSET_ENV = "BANK_PIPELINE_CLOCK_OFFSET"
# A shift of more than about a thousand years leaves the range of Python's dates in one step
# (`nan` and `1e400`, which float() accepts, would fail deep inside a date sum instead).
MAX_OFFSET_SECONDS = 1000 * 366 * 86400


def _offset_seconds() -> float:
    raw = os.environ.get(OFFSET_ENV)
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or abs(value) > MAX_OFFSET_SECONDS:
        from bank_pipeline.errors import BankPipelineError

        raise BankPipelineError(
            f"{OFFSET_ENV} must be a number of seconds between -{MAX_OFFSET_SECONDS} and "
            f"{MAX_OFFSET_SECONDS}, got {raw[:40]!r}"
        ) from None
    return value


def check_offset() -> None:
    """Fail with one line now if the offset setting is unusable (the CLI's settings check)."""
    _offset_seconds()


def now() -> dt.datetime:
    """The current instant, timezone-aware UTC."""
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=_offset_seconds())


def today_utc() -> dt.date:
    """Today's date in UTC (the bank's budget day)."""
    return now().date()


def today_in(timezone: str) -> dt.date:
    """Today's date in `timezone` (an IANA name), the calendar the partitions use."""
    from zoneinfo import ZoneInfo

    return now().astimezone(ZoneInfo(timezone)).date()


def from_wall(instant: dt.datetime) -> dt.datetime:
    """A real-clock instant (e.g. the time Dagster's daemon scheduled a tick for: it runs on the
    wall clock) read on the pipeline's clock, shifted like `now()`."""
    return instant + dt.timedelta(seconds=_offset_seconds())


def to_wall(instant: dt.datetime) -> dt.datetime:
    """The real-clock instant at which the pipeline's clock reads `instant` (`from_wall`'s inverse)."""
    return instant - dt.timedelta(seconds=_offset_seconds())


def offset_for(instant: dt.datetime) -> float:
    """The `BANK_PIPELINE_CLOCK_OFFSET` that makes the clock read `instant` right now."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=dt.timezone.utc)
    return (instant - dt.datetime.now(dt.timezone.utc)).total_seconds()


def pin(instant: dt.datetime | dt.date) -> None:
    """Make the clock (of this process and of every child it starts) read `instant` now.

    A date means noon UTC of that day, far from either midnight."""
    if not isinstance(instant, dt.datetime):
        instant = dt.datetime.combine(instant, dt.time(12), tzinfo=dt.timezone.utc)
    os.environ[OFFSET_ENV] = repr(offset_for(instant))


@contextmanager
def pinned(instant: dt.datetime | dt.date) -> Iterator[None]:
    """`pin` for the block, then restore the previous setting."""
    before = os.environ.get(OFFSET_ENV)
    pin(instant)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(OFFSET_ENV, None)
        else:
            os.environ[OFFSET_ENV] = before
