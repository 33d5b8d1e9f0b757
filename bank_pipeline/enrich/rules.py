"""The user's category rules (`category_rules`): learned from overrides or written by hand.

`key` rules match the normalised description exactly (what `categorize` learns, so the same
payee next month is labelled `rule`); `contains` and `regex` rules match the cleaned text.
Lower `priority` wins, then the newest rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Connection, select, update

from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import category_rules
from bank_pipeline.enrich.normalise import clean_text
from bank_pipeline.enrich.types import ENRICHMENT_FIELDS, Enrichment

LEARNED_PRIORITY = 50


@dataclass(frozen=True)
class Rule:
    id: int
    match_type: str
    pattern: str
    direction: str | None
    enrichment: Enrichment
    regex: re.Pattern[str] | None = None

    def matches(self, normalised: str, cleaned: str, direction: str) -> bool:
        if self.direction not in (None, direction):
            return False
        if self.match_type == "key":
            return normalised == self.pattern
        if self.match_type == "contains":
            needle = clean_text(self.pattern)
            return bool(needle) and f" {needle} " in f" {cleaned} "
        return bool(self.regex and self.regex.search(cleaned))


def load_rules(conn: Connection) -> list[Rule]:
    rows = conn.execute(
        select(category_rules).order_by(category_rules.c.priority, category_rules.c.id.desc())
    ).mappings()
    rules = []
    for row in rows:
        regex = None
        if row["match_type"] == "regex":
            try:
                regex = re.compile(row["pattern"], re.I)
            except re.error:
                continue  # a broken hand-written rule must not stop enrichment
        enrichment = Enrichment(
            **{f: row[f] for f in ENRICHMENT_FIELDS if f != "confidence"},
            confidence=row["confidence"] if row["confidence"] is not None else 1.0,
            source="rule",
            provider="user",
            model=None,
        )
        rules.append(Rule(row["id"], row["match_type"], row["pattern"], row["direction"], enrichment, regex))
    return rules


def match_rule(rules: list[Rule], normalised: str, cleaned: str, direction: str) -> Rule | None:
    for rule in rules:
        if rule.matches(normalised, cleaned, direction):
            return rule
    return None


def learn_rule(
    conn: Connection, normalised: str, direction: str, enrichment: Enrichment, transaction_id: int
) -> int:
    """Insert or refresh the `key` rule for this normalised description + direction."""
    values = {**enrichment.fields(), "learned_from_transaction_id": transaction_id}
    existing = conn.execute(
        select(category_rules.c.id).where(
            category_rules.c.match_type == "key",
            category_rules.c.pattern == normalised,
            category_rules.c.direction == direction,
        )
    ).scalar()
    if existing is not None:
        conn.execute(update(category_rules).where(category_rules.c.id == existing).values(**values))
        return int(existing)
    result = conn.execute(
        category_rules.insert().values(
            match_type="key",
            pattern=normalised,
            direction=direction,
            priority=LEARNED_PRIORITY,
            created_at=utcnow(),
            **values,
        )
    )
    return int(result.inserted_primary_key[0])
