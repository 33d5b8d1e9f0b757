"""Plain values passed between the enrichment tiers, so models never touch the database."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

SOURCES = ("override", "rule", "classifier", "cache", "model", "provider")

# Ways money moves; the offline model and the Anthropic tool schema both use this list.
PAYMENT_METHODS = (
    "card",
    "direct_debit",
    "standing_order",
    "faster_payment",
    "transfer",
    "bank_credit",
    "cash",
    "cheque",
    "interest",
    "fee",
    "other",
)

ENRICHMENT_FIELDS = (
    "category",
    "subcategory",
    "merchant",
    "merchant_type",
    "essential",
    "payment_method",
    "confidence",
)


@dataclass(frozen=True)
class TxnInput:
    """What a model may see of a transaction (no account numbers, no balances)."""

    id: int
    description: str
    amount: Decimal
    direction: str  # debit | credit
    merchant_name: str | None = None
    transaction_category: str | None = None  # TrueLayer's, e.g. PURCHASE, DIRECT_DEBIT
    transaction_classification: tuple[str, ...] = ()


@dataclass(frozen=True)
class Enrichment:
    category: str
    subcategory: str | None = None
    merchant: str | None = None
    merchant_type: str | None = None
    essential: bool | None = None
    payment_method: str | None = None
    confidence: float = 0.0
    source: str = "model"
    provider: str | None = None
    model: str | None = None
    flags: tuple[str, ...] = field(default=())

    def with_(self, **changes: Any) -> Enrichment:
        return replace(self, **changes)

    def fields(self) -> dict[str, Any]:
        """The category columns shared by enrichments, cache, rules and overrides."""
        return {name: getattr(self, name) for name in ENRICHMENT_FIELDS}
