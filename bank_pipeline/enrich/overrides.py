"""`categorize`: the user's word on one transaction — final, and a rule for the next ones.

The override is stored apart from `enrichments` (which every re-enrichment may rewrite), and
enrichment never writes over a transaction that has one. A `key` rule learned from it labels the
same normalised description + direction as source `rule` from then on.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select

from bank_pipeline.categories import Category, load_categories
from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import category_overrides, enrichments, transactions
from bank_pipeline.enrich._db import upsert
from bank_pipeline.enrich.normalise import is_distinctive, normalise_description
from bank_pipeline.enrich.payment import detect_payment_method
from bank_pipeline.enrich.rules import learn_rule
from bank_pipeline.enrich.types import Enrichment
from bank_pipeline.errors import BankPipelineError


@dataclass(frozen=True)
class CategorizeResult:
    transaction_id: int
    enrichment: Enrichment
    rule_id: int | None
    rule_pattern: str | None
    rule_skipped: str | None  # why no rule was learned


def _validate(
    categories: dict[str, Category], category: str, subcategory: str | None, direction: str
) -> Category:
    if category not in categories:
        raise BankPipelineError(
            f"unknown category {category!r}; valid categories: {', '.join(sorted(categories))}"
        )
    cat = categories[category]
    if subcategory is not None and subcategory not in cat.subcategories:
        valid = ", ".join(cat.subcategories) or "(none)"
        raise BankPipelineError(
            f"unknown subcategory {subcategory!r} for {category!r}; valid subcategories: {valid}"
        )
    if direction not in cat.directions:
        allowed = ", ".join(sorted(n for n, c in categories.items() if direction in c.directions))
        money = "money in" if direction == "credit" else "money out"
        raise BankPipelineError(
            f"category {category!r} cannot label a {direction} ({money}); categories for a {direction}: {allowed}"
        )
    return cat


def categorize(
    engine: Engine,
    transaction_id: int,
    category: str,
    *,
    subcategory: str | None = None,
    merchant: str | None = None,
    learn: bool = True,
    categories: dict[str, Category] | None = None,
) -> CategorizeResult:
    categories = categories or load_categories()
    with engine.begin() as conn:
        txn = conn.execute(select(transactions).where(transactions.c.id == transaction_id)).mappings().first()
        if txn is None:
            raise BankPipelineError(f"no transaction with id {transaction_id}")
        cat = _validate(categories, category, subcategory, txn["direction"])
        current = (
            conn.execute(select(enrichments).where(enrichments.c.transaction_id == transaction_id))
            .mappings()
            .first()
        )
        keep = current if current is not None and current["category"] == category else None
        enrichment = Enrichment(
            category=category,
            subcategory=subcategory if subcategory is not None else (keep["subcategory"] if keep else None),
            merchant=merchant or (current["merchant"] if current else None) or txn["merchant_name"],
            merchant_type=current["merchant_type"] if current else None,
            essential=cat.essential,
            payment_method=(current["payment_method"] if current else None)
            or detect_payment_method(txn["description"], txn["transaction_category"]),
            confidence=1.0,
            source="override",
            provider="user",
        )
        now = utcnow()
        upsert(
            conn,
            category_overrides,
            [{"transaction_id": transaction_id, **enrichment.fields(), "created_at": now}],
            ["transaction_id"],
        )
        upsert(
            conn,
            enrichments,
            [
                {
                    "transaction_id": transaction_id,
                    **enrichment.fields(),
                    "source": "override",
                    "provider": "user",
                    "model": None,
                    "cache_key": None,
                    "flags": None,
                    "run_id": None,
                    "updated_at": now,
                }
            ],
            ["transaction_id"],
        )
        rule_id = pattern = skipped = None
        if learn:
            normalised = normalise_description(txn["description"])
            if normalised and is_distinctive(normalised):
                pattern = normalised
                rule_fields = enrichment.with_(payment_method=None, source="rule")
                rule_id = learn_rule(conn, normalised, txn["direction"], rule_fields, transaction_id)
            else:
                skipped = f"the description {txn['description']!r} is too generic to learn a rule from"
        return CategorizeResult(transaction_id, enrichment, rule_id, pattern, skipped)
