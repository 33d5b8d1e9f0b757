"""Text a spreadsheet would run as a formula: CSV (formula) injection, as OWASP describes it.

A cell whose text starts with `=`, `+`, `-`, `@`, a tab or a carriage return is evaluated by
Excel, LibreOffice and Google Sheets when the file is opened (`=HYPERLINK(...)`, `+cmd|...`,
`@SUM(...)`). Bank descriptions and merchant names come from outside, so:

- CSV exports prefix such a cell with a single quote (OWASP's advice), which spreadsheets show
  as text and never run; the CSV writer quotes and doubles quotes as RFC 4180 says
  (`neutralise`). `bank-pipeline export --raw` writes cells verbatim for machine consumers.
- Merchant names the enrichment derives lose their leading trigger characters
  (`strip_formula`): a name never needs them.
- A merchant name the user types is refused if it starts with one (`is_formula`).
"""

from __future__ import annotations

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def is_formula(text: str | None) -> bool:
    """Whether a spreadsheet would read `text` as a formula."""
    return bool(text) and text[0] in TRIGGERS


def neutralise(text: str | None) -> str | None:
    """`text` with a leading single quote when a spreadsheet would run it; as it is otherwise."""
    return f"'{text}" if is_formula(text) else text


def strip_formula(text: str | None) -> str | None:
    """A derived name without leading trigger characters or spaces (None if nothing is left)."""
    if text is None:
        return None
    out = text
    while out and (out[0] in TRIGGERS or out[0].isspace()):
        out = out[1:]
    return out or None
