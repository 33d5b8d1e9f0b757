"""Enrichment: category, merchant, essential/discretionary, payment method for each transaction.

Tiers, cheapest first: the user's overrides and rules → a classifier learned from the user's own
labels → the cache → a model (offline by default, or Anthropic, queued so it sees full batches). See service.py for the run, and docs/architecture.md for the contract.
"""

from __future__ import annotations

from bank_pipeline.enrich.overrides import CategorizeResult, categorize
from bank_pipeline.enrich.service import EnrichStats, enrich_account_days
from bank_pipeline.enrich.types import Enrichment, TxnInput

__all__ = [
    "CategorizeResult",
    "EnrichStats",
    "Enrichment",
    "TxnInput",
    "build_model",
    "categorize",
    "enrich_account_days",
]


def build_model(settings):
    """The configured model tier: `offline` (default) or `anthropic` (settings.enricher)."""
    from bank_pipeline.config import ConfigError

    kind = (settings.enricher or "offline").lower()
    if kind == "offline":
        from bank_pipeline.enrich.offline import OfflineModel

        return OfflineModel()
    if kind == "anthropic":
        from bank_pipeline.enrich.anthropic_model import AnthropicModel
        from bank_pipeline.enrich.queue import QueuePolicy

        return AnthropicModel(
            api_key=settings.anthropic_api_key,
            model=settings.anthropic_model,
            base_url=settings.anthropic_base_url,
            batch_size=settings.enrich_batch_size,
            queue=QueuePolicy.from_settings(settings),
        )
    raise ConfigError(f"BANK_PIPELINE_ENRICHER must be 'offline' or 'anthropic', got {settings.enricher!r}")
