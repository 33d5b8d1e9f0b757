"""Income is income: every tier's answer passes through here before it is stored.

A credit may only carry a category whose `directions` include "credit" (and a debit one that
includes "debit"). A mislabel is coerced to the nearest allowed category and flagged, never
stored as spending.
"""

from __future__ import annotations

import logging

from bank_pipeline.categories import Category
from bank_pipeline.enrich.types import Enrichment

log = logging.getLogger(__name__)

# Where a mislabelled credit goes: money back from a spending category is a refund.
_CREDIT_FALLBACKS = (("refunds", "refund"), ("income", "other_income"), ("other", None), ("unknown", None))
_DEBIT_FALLBACKS = (("other", None), ("unknown", None))


def _first_allowed(categories: dict[str, Category], direction: str, options) -> tuple[str, str | None]:
    for name, sub in options:
        category = categories.get(name)
        if category and direction in category.directions:
            return name, sub if sub in category.subcategories else None
    return "unknown", None


def enforce_direction(result: Enrichment, direction: str, categories: dict[str, Category]) -> Enrichment:
    """The result, coerced (and flagged) if its category cannot label this direction."""
    category = categories.get(result.category)
    if category is None:
        result = result.with_(
            category="unknown", subcategory=None, flags=(*result.flags, f"unknown_category:{result.category}")
        )
        category = categories["unknown"]
    if result.subcategory and result.subcategory not in category.subcategories:
        result = result.with_(subcategory=None)
    if direction in category.directions:
        if result.essential is None:
            result = result.with_(essential=category.essential)
        return result
    options = _CREDIT_FALLBACKS if direction == "credit" else _DEBIT_FALLBACKS
    name, sub = _first_allowed(categories, direction, options)
    log.info("coerced %s %s → %s (category not allowed for %ss)", direction, result.category, name, direction)
    return result.with_(
        category=name,
        subcategory=sub,
        essential=categories[name].essential if name in categories else False,
        confidence=min(result.confidence, 0.5),
        flags=(*result.flags, f"direction_coerced:{result.category}"),
    )
