"""Split an inclusive date range into windows the bank accepts (no pagination in Data API v1)."""

from __future__ import annotations

import datetime as dt

from bank_pipeline.truelayer.errors import InvalidDateRange


def as_date(value: dt.date | str, name: str = "date") -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise InvalidDateRange(f"{name} must be a date (YYYY-MM-DD), got {value!r}") from exc


def check_range(date_from: dt.date, date_to: dt.date) -> None:
    if date_from > date_to:
        raise InvalidDateRange(
            f"invalid date range: from {date_from.isoformat()} is after to {date_to.isoformat()}",
            error="invalid_date_range",
        )


def split_windows(
    date_from: dt.date | str, date_to: dt.date | str, max_days: int
) -> list[tuple[dt.date, dt.date]]:
    """Inclusive (from, to) windows covering the range in order, each spanning at most `max_days` days."""
    start, end = as_date(date_from, "date_from"), as_date(date_to, "date_to")
    check_range(start, end)
    if max_days < 1:
        raise InvalidDateRange(f"max_days must be at least 1, got {max_days}")
    windows = []
    step = dt.timedelta(days=max_days - 1)
    while start <= end:
        stop = min(start + step, end)
        windows.append((start, stop))
        start = stop + dt.timedelta(days=1)
    return windows
