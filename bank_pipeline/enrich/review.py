"""The review list: enrichments the enricher was unsure of, grouped by payee, most frequent first.

A guess ("ROSA'S PIZZERIA" → takeaway, from a word it shares with many pizza chains) is kept at a
low confidence rather than labelled "unknown"; this list is where the user sees those guesses,
the payees that matter most first, and corrects them with `bank-pipeline categorize` (which
also teaches a rule for the payee's next transactions). Overrides and learned rules are never
listed: the user already decided them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Engine, select

from bank_pipeline.db.schema import accounts, enrichments, transactions
from bank_pipeline.enrich.normalise import normalise_description

REVIEW_BELOW = 0.5  # confidences under this are listed (the kind-of-business guess is 0.45)
_DECIDED = ("override", "rule")


@dataclass(frozen=True)
class ReviewRow:
    payee: str  # the normalised description the rows share
    direction: str
    count: int
    category: str
    subcategory: str | None
    confidence: float  # the lowest among the rows
    merchant: str | None
    example_id: int  # a transaction to pass to `categorize`
    example: str  # its description, as the bank sent it


def review_list(
    engine: Engine,
    *,
    below: float = REVIEW_BELOW,
    date_from: date | None = None,
    date_to: date | None = None,
    account_keys: list[str] | None = None,
    limit: int | None = None,
) -> list[ReviewRow]:
    """Low-confidence enrichments grouped by (normalised description, direction), most rows first
    (then the least sure, then alphabetically)."""
    t, e = transactions, enrichments
    query = (
        select(
            t.c.id,
            t.c.description,
            t.c.direction,
            e.c.category,
            e.c.subcategory,
            e.c.confidence,
            e.c.merchant,
        )
        .select_from(t.join(e, e.c.transaction_id == t.c.id).join(accounts, accounts.c.id == t.c.account_id))
        .where(e.c.source.not_in(_DECIDED))
        .where((e.c.confidence.is_(None)) | (e.c.confidence < below))
    )
    if date_from is not None:
        query = query.where(t.c.booking_date >= date_from)
    if date_to is not None:
        query = query.where(t.c.booking_date <= date_to)
    if account_keys:
        query = query.where(accounts.c.account_key.in_(account_keys))
    groups: dict[tuple[str, str], list] = defaultdict(list)
    with engine.connect() as conn:
        for r in conn.execute(query.order_by(t.c.id)):
            payee = normalise_description(r.description) or (r.description or "").strip()
            groups[(payee, r.direction)].append(r)
    out = []
    for (payee, direction), rows in groups.items():
        first = rows[0]
        out.append(
            ReviewRow(
                payee=payee,
                direction=direction,
                count=len(rows),
                category=first.category,
                subcategory=first.subcategory,
                confidence=min(float(r.confidence or 0.0) for r in rows),
                merchant=first.merchant,
                example_id=first.id,
                example=first.description or "",
            )
        )
    out.sort(key=lambda r: (-r.count, r.confidence, r.payee, r.direction))
    return out[:limit] if limit else out


def shown(text: str | None) -> str:
    """Bank text made safe for a terminal: control characters escaped, not interpreted."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in (text or ""))
