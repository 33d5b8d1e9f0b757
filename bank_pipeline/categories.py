"""The category taxonomy shared by the enricher, the simulator's ground truth and the UI.

A default list fit for UK personal finance. Replace it with a JSON file named by
BANK_PIPELINE_CATEGORIES_FILE: {"category": {"essential": bool, "subcategories": [...],
"directions": ["debit", "credit"]}, ...}. "other" and "unknown" are always present.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from bank_pipeline.errors import BankPipelineError


@dataclass(frozen=True)
class Category:
    name: str
    essential: bool
    subcategories: tuple[str, ...]
    # Which directions the category may label: income is never labelled as spending.
    directions: frozenset[str]


_BOTH = ("debit", "credit")
_DEFAULT = {
    "income": (False, ("salary", "benefits", "interest", "dividends", "other_income"), ("credit",)),
    "refunds": (False, ("refund", "cashback"), ("credit",)),
    "transfers": (False, ("own_accounts", "to_others", "from_others"), _BOTH),
    "housing": (True, ("rent", "mortgage", "council_tax", "maintenance"), ("debit",)),
    "utilities": (True, ("energy", "water", "broadband", "mobile", "tv_licence"), ("debit",)),
    "groceries": (True, ("supermarket", "convenience"), ("debit",)),
    "dining": (False, ("restaurants", "takeaway", "coffee", "pubs_bars"), ("debit",)),
    "transport": (True, ("public_transport", "rail", "fuel", "taxi", "parking", "car"), ("debit",)),
    "shopping": (False, ("general", "clothing", "electronics", "home", "books"), ("debit",)),
    "subscriptions": (False, ("streaming", "software", "news", "memberships"), ("debit",)),
    "health": (True, ("pharmacy", "medical", "dental", "optician"), ("debit",)),
    "fitness": (False, ("gym", "sports"), ("debit",)),
    "entertainment": (False, ("cinema", "events", "games", "hobbies"), ("debit",)),
    "travel": (False, ("flights", "hotels", "holiday", "car_hire"), ("debit",)),
    "insurance": (True, ("home", "car", "life", "pet", "travel"), ("debit",)),
    "cash": (False, ("atm_withdrawal", "cash_deposit"), _BOTH),
    "fees": (True, ("bank_fees", "interest_charged", "fx_fees"), ("debit",)),
    "debt_repayment": (True, ("credit_card", "loan"), ("debit",)),
    "personal_care": (False, ("hair_beauty", "toiletries"), ("debit",)),
    "education": (True, ("tuition", "courses"), ("debit",)),
    "childcare": (True, ("nursery", "school"), ("debit",)),
    "pets": (False, ("pet_supplies", "vet"), ("debit",)),
    "charity": (False, ("donations",), ("debit",)),
    "gifts": (False, ("gifts",), ("debit",)),
    "taxes": (True, ("income_tax", "hmrc"), ("debit",)),
    "other": (False, (), _BOTH),
    "unknown": (False, (), _BOTH),
}


def _build(spec: dict) -> dict[str, Category]:
    out: dict[str, Category] = {}
    for name, value in spec.items():
        if isinstance(value, dict):
            essential = bool(value.get("essential", False))
            subs = tuple(value.get("subcategories", ()))
            directions = frozenset(value.get("directions", _BOTH))
        else:
            essential, subs, dirs = value
            directions = frozenset(dirs)
        if not directions <= set(_BOTH):
            raise BankPipelineError(f"category {name!r}: directions must be 'debit' and/or 'credit'")
        out[name] = Category(name, essential, subs, directions)
    for required in ("other", "unknown"):
        out.setdefault(required, Category(required, False, (), frozenset(_BOTH)))
    return out


def load_categories(path: str | None = None) -> dict[str, Category]:
    """The configured taxonomy: the file named by BANK_PIPELINE_CATEGORIES_FILE, else the default."""
    path = path or os.environ.get("BANK_PIPELINE_CATEGORIES_FILE")
    if not path:
        return DEFAULT_CATEGORIES
    try:
        with open(path, encoding="utf-8") as handle:
            return _build(json.load(handle))
    except (OSError, json.JSONDecodeError) as exc:
        raise BankPipelineError(f"cannot read the category file {path}: {exc}") from exc


DEFAULT_CATEGORIES = _build(_DEFAULT)

# Categories an inflow may carry; anything else on a credit is a mislabel (income is not spending).
CREDIT_CATEGORIES = frozenset(n for n, c in DEFAULT_CATEGORIES.items() if "credit" in c.directions)
