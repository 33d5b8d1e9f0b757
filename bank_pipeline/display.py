"""Text from outside (what the bank names an account, its error descriptions, a failure message
quoting them) as a terminal, a log line or a page shows it.

Control, format and line-separator characters are escaped the way Python writes them (`\\n`,
`\\x00`, `\\u202e`), so a value can neither split a line and forge the next one, nor reorder it
with a bidi override; other characters, accented letters included, are shown as they are.
"""

from __future__ import annotations

MAX_SHOWN = 300


def escaped(value: object, limit: int = MAX_SHOWN) -> str:
    """`value` on one line with nothing a terminal would act on, at most `limit` characters of it."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
