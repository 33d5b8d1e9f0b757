"""Timestamps as TrueLayer and the databases hand them back, made timezone-aware UTC."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """Timezone-aware UTC (SQLite hands back naive datetimes that were stored as UTC)."""
    if value is None:
        return None
    return (
        value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)
    )


def parse_timestamp(value: Any) -> dt.datetime | None:
    """An ISO-8601 timestamp from TrueLayer (`…Z`, offsets, with or without fractions) in UTC."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", text)
    if match:  # Python 3.10 accepts only 3 or 6 fractional digits
        text = f"{match.group(1)}.{match.group(2)[:6].ljust(6, '0')}{match.group(3)}"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return aware(parsed)
