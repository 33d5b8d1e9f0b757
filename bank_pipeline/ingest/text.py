"""Text and currency hygiene for rows on their way into the database.

PostgreSQL text cannot hold NUL, UTF-8 cannot hold lone surrogates, and control characters in a
description break logs, CSV exports and the enrichment prompts. `clean_text` removes them the same
way every time (the verbatim row stays in `raw_transactions`), so a re-sent row cleans to the same
value and dedups against itself. Currency codes are checked against a static ISO 4217 list.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

_CODES_FILE = Path(__file__).with_name("data") / "iso4217.txt"
# C0 controls, DEL and C1 controls; tab/newline/carriage return and friends become one space.
_SPACING = re.compile(r"[\t\n\r\x0b\x0c\x1c-\x1f\x85\u2028\u2029]+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """`value` without characters a database or a log line cannot hold safely: lone surrogates
    become U+FFFD, line-breaking controls a space, other control characters (NUL included) are
    dropped. Deterministic; already clean text is returned unchanged."""
    if value.isprintable() and not _SURROGATE.search(value):
        return value
    value = _SURROGATE.sub("\ufffd", value)
    value = _SPACING.sub(" ", value)
    return _CONTROL.sub("", value)


def fitted(value: object, limit: int) -> str | None:
    """A text value from the bank for a column of `limit` characters: cleaned like `clean_text`,
    cut with "…" when longer (PostgreSQL refuses an over-long value where SQLite stores it, so
    both keep the same cut text); None for a missing or non-text value."""
    if not isinstance(value, str):
        return None
    value = clean_text(value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def needs_cleaning(value: str) -> bool:
    return clean_text(value) != value


@lru_cache(maxsize=1)
def iso_currency_codes() -> frozenset[str]:
    """The ISO 4217 codes shipped with the package (no network)."""
    words = []
    for line in _CODES_FILE.read_text(encoding="ascii").splitlines():
        if not line.startswith("#"):
            words.extend(line.split())
    return frozenset(words)


def is_iso_currency(code: str) -> bool:
    return code.upper() in iso_currency_codes()

