"""What a model call costs: USD per million tokens, per model, with cache multipliers.

Defaults are Anthropic's list prices; BANK_PIPELINE_MODEL_PRICES_FILE names a JSON file
{"model": {"input": 1.0, "output": 5.0, "cache_write_multiplier": 1.25,
"cache_read_multiplier": 0.1}} whose entries replace or add to them (prices change; the code
should not need to).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from decimal import Decimal

from bank_pipeline.errors import BankPipelineError

log = logging.getLogger(__name__)
PRICES_ENV = "BANK_PIPELINE_MODEL_PRICES_FILE"
# The Message Batches API charges half the list price for every token kind.
BATCH_DISCOUNT = Decimal("0.5")
_MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class ModelPrice:
    input: Decimal  # USD per million uncached input tokens
    output: Decimal  # USD per million output tokens
    cache_write_multiplier: Decimal = Decimal("1.25")  # 5-minute ephemeral cache write
    cache_read_multiplier: Decimal = Decimal("0.1")

    def cost(
        self, input_tokens: int, output_tokens: int, cache_write: int = 0, cache_read: int = 0
    ) -> Decimal:
        total = (
            self.input * input_tokens
            + self.output * output_tokens
            + self.input * self.cache_write_multiplier * cache_write
            + self.input * self.cache_read_multiplier * cache_read
        )
        return total / _MILLION


def _price(input_: str, output: str) -> ModelPrice:
    return ModelPrice(Decimal(input_), Decimal(output))


DEFAULT_PRICES: dict[str, ModelPrice] = {
    "claude-haiku-4-5": _price("1", "5"),
    "claude-sonnet-4-5": _price("3", "15"),
    "claude-sonnet-4": _price("3", "15"),
    "claude-opus-4-5": _price("5", "25"),
    "claude-opus-4-1": _price("15", "75"),
    "claude-opus-4": _price("15", "75"),
    "claude-3-7-sonnet": _price("3", "15"),
    "claude-3-5-haiku": _price("0.8", "4"),
    "claude-3-haiku": _price("0.25", "1.25"),
}


class PriceTable:
    def __init__(self, prices: dict[str, ModelPrice]):
        self.prices = dict(prices)
        self._warned: set[str] = set()

    @classmethod
    def from_env(cls) -> PriceTable:
        prices = dict(DEFAULT_PRICES)
        path = os.environ.get(PRICES_ENV)
        if path:
            prices.update(load_price_file(path))
        return cls(prices)

    def get(self, model: str) -> ModelPrice | None:
        """Exact name, else the longest configured name the model starts with (dated snapshots)."""
        if model in self.prices:
            return self.prices[model]
        candidates = [name for name in self.prices if model.startswith(name)]
        if candidates:
            return self.prices[max(candidates, key=len)]
        if model not in self._warned:
            self._warned.add(model)
            log.warning(
                "no price configured for model %s; its calls are costed at 0 (set %s)", model, PRICES_ENV
            )
        return None

    def cost(
        self, model: str, input_tokens: int, output_tokens: int, cache_write: int, cache_read: int
    ) -> Decimal:
        price = self.get(model)
        return price.cost(input_tokens, output_tokens, cache_write, cache_read) if price else Decimal(0)


def load_price_file(path: str) -> dict[str, ModelPrice]:
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
        out = {}
        for model, spec in raw.items():
            out[model] = ModelPrice(
                Decimal(str(spec["input"])),
                Decimal(str(spec["output"])),
                Decimal(str(spec.get("cache_write_multiplier", "1.25"))),
                Decimal(str(spec.get("cache_read_multiplier", "0.1"))),
            )
        return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BankPipelineError(f"cannot read the model price file {path} ({PRICES_ENV}): {exc!r}") from exc


# Typical tokens of one enrichment call, measured against the fake Messages API (bench section
# `enrichment`): the instructions + tool, then per transaction in and out. The prefix is charged
# as plain input: it is shorter than Claude Haiku 4.5's 4096-token minimum for prompt caching.
TYPICAL_PREFIX_TOKENS = 1100
TYPICAL_INPUT_TOKENS_PER_TXN = 57
TYPICAL_OUTPUT_TOKENS_PER_TXN = 43


def estimate_call_cost(model: str, batch_size: int, prices: PriceTable | None = None) -> Decimal:
    """Expected USD of one full batch call, for planning (`bank-pipeline plan`)."""
    prices = prices or PriceTable.from_env()
    return prices.cost(
        model,
        TYPICAL_PREFIX_TOKENS + TYPICAL_INPUT_TOKENS_PER_TXN * batch_size,
        TYPICAL_OUTPUT_TOKENS_PER_TXN * batch_size,
        0,
        0,
    )
