"""ISO 8601 timestamps as TrueLayer, webhooks and the databases hand them over, made UTC: the one parser."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

_OFFSET_NO_COLON = re.compile(r"([+-]\d\d)(\d\d)$")
_FRACTION = re.compile(r"\.(\d+)(?=[+-]\d\d:\d\d$|$)")


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """Timezone-aware UTC (SQLite hands back naive datetimes that were stored as UTC)."""
    if value is None:
        return None
    return (
        value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)
    )


def parse_iso(text: str) -> dt.datetime:
    """An ISO 8601 date-time as written: `…Z`, `+01:00` or `+0100`, fractions of any length, a space
    instead of `T`. Naive when the text has no offset (the caller decides what that means); raises
    ValueError when it does not parse."""
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    text = _OFFSET_NO_COLON.sub(r"\1:\2", text)  # Python 3.10's fromisoformat wants the colon
    # Fractional seconds of any length → microseconds (3.10 accepts only 3 or 6 digits).
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text)
    return dt.datetime.fromisoformat(text)


def parse_timestamp(value: Any) -> dt.datetime | None:
    """A TrueLayer timestamp in UTC (no offset = UTC); None when absent or unparseable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return aware(parse_iso(value))
    except ValueError:
        return None
