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
    "model_for",
]


def build_model(settings):
    """The model tier `settings` configure (the CLI's; Dagster's is the `enrichment_model` resource)."""
    from bank_pipeline.enrich.queue import QueuePolicy

    return model_for(
        settings.enricher,
        api_key=settings.anthropic_api_key,
        model=settings.anthropic_model,
        base_url=settings.anthropic_base_url,
        batch_size=settings.enrich_batch_size,
        queue=QueuePolicy.from_settings(settings),
    )


def model_for(kind: str | None, *, api_key, model: str, base_url, batch_size: int, queue):
    """The model tier: `offline` (default) or `anthropic` (BANK_PIPELINE_ENRICHER)."""
    from bank_pipeline.config import ConfigError

    name = (kind or "offline").lower()
    if name == "offline":
        from bank_pipeline.enrich.offline import OfflineModel

        return OfflineModel()
    if name == "anthropic":
        from bank_pipeline.enrich.anthropic_model import AnthropicModel

        return AnthropicModel(api_key=api_key, model=model, base_url=base_url, batch_size=batch_size, queue=queue)
    raise ConfigError(f"BANK_PIPELINE_ENRICHER must be 'offline' or 'anthropic', got {kind!r}")
