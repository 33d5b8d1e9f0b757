"""The Anthropic model tier: Claude via the official SDK, batched, structured, costed.

Structured output is a forced tool call whose schema enumerates the configured categories (plus
"unknown"), so every answer is a known label. Answers are matched back by transaction id, never
by position; ids a response leaves out or gets wrong are asked again once in smaller batches,
then answered by the offline model with that recorded (provider "offline", flag
"fallback:anthropic") and logged — never dropped. The instructions and tool are marked for
prompt caching: they are identical across batches and runs. Retries (429/529/5xx, connection
errors; tenacity, honouring `retry-after`) are ours, not the SDK's, so every attempt is counted
in the ledger.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

import anthropic
import tenacity

from bank_pipeline.categories import Category, load_categories
from bank_pipeline.enrich.ledger import CallRecord, Ledger
from bank_pipeline.enrich.offline import OfflineModel
from bank_pipeline.enrich.payment import detect_payment_method
from bank_pipeline.enrich.policy import enforce_direction
from bank_pipeline.enrich.types import PAYMENT_METHODS, Enrichment, TxnInput
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.retries import parse_retry_after, retrying, wait_retry_after

log = logging.getLogger(__name__)
TOOL_NAME = "record_enrichments"
BATCH_PROVIDER = "anthropic-batch"  # llm_calls.provider of answers from the Message Batches API
_RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504, 529}
# Output budget per answer: an item is about 45 tokens (measured against the fake, 4 characters a
# token; pricing.TYPICAL_OUTPUT_TOKENS_PER_TXN), so 150 leaves room for long merchant names.
OUTPUT_TOKENS_PER_ANSWER = 150
OUTPUT_TOKENS_BASE = 400
MAX_OUTPUT_TOKENS = 64000  # Claude Haiku 4.5's (and Sonnet 4.5's) output limit
# The largest call whose answers fit that limit at OUTPUT_TOKENS_PER_ANSWER each.
MAX_BATCH_SIZE = (MAX_OUTPUT_TOKENS - OUTPUT_TOKENS_BASE) // OUTPUT_TOKENS_PER_ANSWER

_INSTRUCTIONS = """You categorise UK personal bank transactions for a budgeting ledger.

For every transaction in the user's message, return exactly one item in the `{tool}` tool call,
carrying the transaction's `id` unchanged. Fields:
- category: one of the listed categories; use "unknown" when the text does not tell you.
- subcategory: one of that category's subcategories, or null.
- merchant: the clean merchant or payee name ("Tesco", "British Gas"), or null for a person,
  your own account, salary, cash or bank fees.
- merchant_type: a short snake_case kind ("supermarket", "energy_supplier"), or null.
- essential: true for needs (housing, bills, groceries, transport to work), false for wants.
- payment_method: how the money moved.
- confidence: 0 to 1.

UK bank text conventions: DD/DDR = direct debit, SO/STO = standing order, FPO/FPI/FP = faster
payment out/in, BGC/BACS = bank giro credit (often salary), CPT/ATM/LINK/NOTEMAC = cash machine,
")))"/CLP/VIS/DEB/POS = card, TFR = transfer; store numbers, card numbers, dates and references
are noise. TrueLayer's category/classification fields are hints, not answers.

Direction matters: money IN (credit) may only use a category marked "credit" below (income,
refunds, transfers, …) — a credit from a shop is a refund, never spending. Money OUT (debit)
may only use a category marked "debit"."""


def _transient(exc: BaseException) -> bool:
    """Worth another attempt: a connection failure, or a status that says "later" (429, 529, 5xx…)."""
    if isinstance(exc, anthropic.APIStatusError):
        return exc.status_code in _RETRYABLE_STATUS
    return isinstance(exc, anthropic.APIConnectionError)


def _retry_after(exc: BaseException) -> float | None:
    """Seconds the API asked us to wait (`retry-after-ms`, then `retry-after`), when it said."""
    headers = exc.response.headers if isinstance(exc, anthropic.APIStatusError) else {}
    milliseconds = parse_retry_after(headers.get("retry-after-ms"))
    return milliseconds / 1000 if milliseconds is not None else parse_retry_after(headers.get("retry-after"))


def split_evenly(items: Sequence, cap: int) -> list[Sequence]:
    """The fewest parts of at most `cap` items, their sizes within one of each other (51 items at
    50 a call: 26 + 25, not 50 + 1)."""
    if not items:
        return []
    parts = -(-len(items) // cap)
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for n in range(parts):
        end = start + size + (n < extra)
        out.append(items[start:end])
        start = end
    return out


def _category_listing(categories: dict[str, Category]) -> str:
    lines = []
    for name, cat in categories.items():
        subs = ", ".join(cat.subcategories) or "-"
        dirs = "/".join(sorted(cat.directions))
        lines.append(f"- {name} [{dirs}] ({'essential' if cat.essential else 'discretionary'}): {subs}")
    return "Categories [directions allowed] (kind): subcategories\n" + "\n".join(lines)


class AnthropicModel:
    provider = "anthropic"

    def __init__(
        self,
        *,
        api_key: str | None,
        model: str,
        base_url: str | None = None,
        batch_size: int = 50,
        categories: dict[str, Category] | None = None,
        fallback: OfflineModel | None = None,
        max_attempts: int = 4,
        retry_base_delay: float = 1.0,
        retry_max_delay: float = 30.0,
        timeout: float = 120.0,
        queue=None,
    ):
        if not api_key:
            raise BankPipelineError(
                "ANTHROPIC_API_KEY is not set: set it, or use the offline enricher (BANK_PIPELINE_ENRICHER=offline)"
            )
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise BankPipelineError(
                f"BANK_PIPELINE_ENRICH_BATCH_SIZE must be 1 to {MAX_BATCH_SIZE} (the answers must fit the "
                f"model's {MAX_OUTPUT_TOKENS} output tokens), got {batch_size}"
            )
        if queue is not None and batch_size < 2 * queue.batch - 1:
            log.warning(
                "BANK_PIPELINE_ENRICH_BATCH_SIZE %d is under twice the queue batch %d less one: a send "
                "of the queue can make more than one call per %d descriptions",
                batch_size,
                queue.batch,
                queue.batch,
            )
        self.name = model
        self.batch_size = batch_size
        # A QueuePolicy: answer misses provisionally and call when a batch is full (service.py).
        self.queue = queue
        self.categories = categories or load_categories()
        self.fallback = fallback or OfflineModel(self.categories)
        self.max_attempts = max(1, max_attempts)
        self.retry_base_delay = retry_base_delay
        self.retry_max_delay = retry_max_delay
        # max_retries=0: we retry ourselves, to count attempts per call in the ledger.
        self.client = anthropic.Anthropic(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout)
        self.labels = [*[c for c in self.categories if c != "unknown"], "unknown"]
        self.system = [
            {
                "type": "text",
                "text": _INSTRUCTIONS.format(tool=TOOL_NAME) + "\n\n" + _category_listing(self.categories),
                "cache_control": {"type": "ephemeral"},
            }
        ]
        self.tools = [self._tool()]
        self.fallbacks = 0

    def __repr__(self) -> str:  # never show the client (it holds the key)
        return f"AnthropicModel(model={self.name!r}, batch_size={self.batch_size})"

    def _tool(self) -> dict:
        item = {
            "type": "object",
            "properties": {
                "id": {"type": "string", "description": "the transaction's id, exactly as given"},
                "category": {"type": "string", "enum": self.labels},
                "subcategory": {"type": ["string", "null"]},
                "merchant": {"type": ["string", "null"]},
                "merchant_type": {"type": ["string", "null"]},
                "essential": {"type": "boolean"},
                "payment_method": {"type": "string", "enum": list(PAYMENT_METHODS)},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            },
            "required": ["id", "category", "confidence"],
        }
        return {
            "name": TOOL_NAME,
            "description": "Record the enrichment of every transaction in the batch, one item per id.",
            "input_schema": {
                "type": "object",
                "properties": {"items": {"type": "array", "items": item}},
                "required": ["items"],
            },
            "cache_control": {"type": "ephemeral"},
        }

    # --- public ---------------------------------------------------------------------------

    def enrich(self, items: Sequence[TxnInput], *, ledger: Ledger | None = None) -> dict[int, Enrichment]:
        ledger = ledger or Ledger(None, None)
        results: dict[int, Enrichment] = {}
        missing: list[TxnInput] = []
        failed: list[TxnInput] = []  # the call itself failed after retries: no second round
        for part in split_evenly(items, self.batch_size):
            got, lost, call_failed = self._batch(part, ledger)
            results.update(got)
            (failed if call_failed else missing).extend(lost)
        still: list[TxnInput] = list(failed)
        if missing:  # once more, in smaller batches
            size = max(1, min(len(missing), self.batch_size // 2))
            log.info("asking again for %d transaction(s) the model left out or got wrong", len(missing))
            for start in range(0, len(missing), size):
                got, lost, _ = self._batch(missing[start : start + size], ledger)
                results.update(got)
                still.extend(lost)
        if still:
            self.fallbacks += len(still)
            log.warning(
                "the Anthropic model gave no valid answer for %d transaction(s) (ids %s); "
                "using the offline model for them",
                len(still),
                ", ".join(str(t.id) for t in still[:20]),
            )
            for txn in still:
                answer = self.fallback.classify(txn)
                results[txn.id] = answer.with_(flags=(*answer.flags, "fallback:anthropic"))
        return results

    # --- one batch --------------------------------------------------------------------------

    def _batch(
        self, batch: Sequence[TxnInput], ledger: Ledger
    ) -> tuple[dict[int, Enrichment], list[TxnInput], bool]:
        """(answers, transactions without a valid answer, whether the call failed outright)."""
        by_id = {str(t.id): t for t in batch}
        record = CallRecord(provider=self.provider, model=self.name, batch_size=len(batch), attempts=0)
        started = time.perf_counter()
        response = None
        try:
            response = self._send(batch, record)
        finally:
            record.latency_ms = int((time.perf_counter() - started) * 1000)
            if response is None:
                record.outcome = "error"
                ledger.record(record)
        if response is None:
            return {}, list(batch), True
        record.count_usage(response.usage)
        results, problems = self._parse(response, by_id)
        lost = [t for key, t in by_id.items() if t.id not in results]
        if lost or problems:
            record.outcome = "partial"
            record.error = "; ".join(
                problems + ([f"{len(lost)} id(s) without a valid answer"] if lost else [])
            )
            log.warning("model batch of %d: %s", len(batch), record.error)
        ledger.record(record)
        return results, lost, False

    def request_params(self, batch: Sequence[TxnInput]) -> dict:
        """The Messages API parameters for one batch: the stable prefix (system + tool, marked for
        prompt caching) then the transactions."""
        payload = {
            "transactions": [
                {
                    "id": str(t.id),
                    "description": t.description,
                    "amount": str(t.amount),
                    "direction": t.direction,
                    "merchant_name": t.merchant_name,
                    "truelayer_category": t.transaction_category,
                    "truelayer_classification": list(t.transaction_classification) or None,
                }
                for t in batch
            ]
        }
        return {
            "model": self.name,
            "max_tokens": min(MAX_OUTPUT_TOKENS, OUTPUT_TOKENS_BASE + OUTPUT_TOKENS_PER_ANSWER * len(batch)),
            "system": self.system,
            "tools": self.tools,
            "tool_choice": {"type": "tool", "name": TOOL_NAME},
            "messages": [
                {
                    "role": "user",
                    "content": f"Categorise these {len(batch)} transactions:\n"
                    + json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
                }
            ],
        }

    def _send(self, batch: Sequence[TxnInput], record: CallRecord):
        """The response, after retrying transient failures; None when every attempt failed."""
        params = self.request_params(batch)
        loop = retrying(
            attempts=self.max_attempts,
            retry_if=_transient,
            wait=wait_retry_after(
                _retry_after,
                # "equal jitter": half the doubling backoff, plus up to as much again at random
                tenacity.wait_exponential(multiplier=self.retry_base_delay / 2, max=self.retry_max_delay / 2)
                + tenacity.wait_random_exponential(
                    multiplier=self.retry_base_delay / 2, max=self.retry_max_delay / 2
                ),
                self.retry_max_delay,
            ),
            log=log,
            what="model call",
            describe=lambda exc: record.error,
            level=logging.INFO,
        )
        try:
            for attempt in loop:
                with attempt:
                    record.attempts = attempt.retry_state.attempt_number
                    return self._create(params, record)
        except (anthropic.APIStatusError, anthropic.APIConnectionError) as exc:
            if _transient(exc):
                log.warning("model call failed after %d attempts: %s", record.attempts, record.error)
            else:
                log.warning("model call failed without retry: %s", record.error)
            return None
        raise AssertionError("unreachable")  # pragma: no cover

    def _create(self, params: dict, record: CallRecord):
        """One Messages API call; a failure is noted on the record and raised."""
        try:
            return self.client.messages.create(**params)
        except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as exc:
            record.error = f"{type(exc).__name__} (HTTP {exc.status_code})"
            raise BankPipelineError(
                f"the Anthropic API refused the credentials (HTTP {exc.status_code}): check ANTHROPIC_API_KEY"
            ) from None
        except anthropic.APIStatusError as exc:
            record.error = f"HTTP {exc.status_code}: {type(exc).__name__}"
            raise
        except anthropic.APIConnectionError as exc:
            record.error = type(exc).__name__
            raise

    # --- Message Batches (half price, answers within 24 hours) -------------------------------

    def submit_batch(self, items: Sequence[TxnInput]) -> str:
        """Submit the items as one Message Batch (requests of up to `batch_size` items); → its id.

        Request shape as documented: {"requests": [{"custom_id", "params"}]}; the answers are
        matched back by transaction id when the batch has ended (`collect_batch`)."""
        requests = [
            {"custom_id": f"part-{n}", "params": self.request_params(part)}
            for n, part in enumerate(split_evenly(items, self.batch_size))
        ]
        try:
            batch = self.client.messages.batches.create(requests=requests)
        except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as exc:
            raise BankPipelineError(
                f"the Anthropic API refused the credentials (HTTP {exc.status_code}): check ANTHROPIC_API_KEY"
            ) from None
        log.info(
            "submitted message batch %s: %d request(s), %d transaction(s)",
            batch.id,
            len(requests),
            len(items),
        )
        return batch.id

    def collect_batch(
        self, batch_id: str, items: Sequence[TxnInput], ledger: Ledger | None = None
    ) -> dict[int, Enrichment] | None:
        """The answers of an ended Message Batch (None while it is still in progress). Items a
        result leaves out are absent from the dict: the caller queues them again."""
        ledger = ledger or Ledger(None, None)
        try:
            batch = self.client.messages.batches.retrieve(batch_id)
        except anthropic.NotFoundError:
            log.warning("message batch %s is unknown to the API; its items are queued again", batch_id)
            return {}
        except (anthropic.APIStatusError, anthropic.APIConnectionError) as exc:
            log.warning(
                "cannot check message batch %s (%s); trying again next run", batch_id, type(exc).__name__
            )
            return None
        if batch.processing_status != "ended":
            return None
        by_id = {str(t.id): t for t in items}
        results: dict[int, Enrichment] = {}
        for entry in self.client.messages.batches.results(batch_id):
            result = entry.result
            record = CallRecord(
                provider=BATCH_PROVIDER, model=self.name, batch_size=0, attempts=1, batch_api=True
            )
            if result.type != "succeeded":
                record.outcome, record.error = "error", f"batch request {entry.custom_id}: {result.type}"
                ledger.record(record)
                continue
            message = result.message
            record.count_usage(message.usage)
            got, problems = self._parse(message, by_id)
            record.batch_size = len(got)
            if problems:
                record.outcome, record.error = "partial", "; ".join(problems)
            ledger.record(record)
            results.update(got)
        return results

    def _parse(self, response, by_id: dict[str, TxnInput]) -> tuple[dict[int, Enrichment], list[str]]:
        items: list = []
        for block in response.content or []:
            if getattr(block, "type", None) == "tool_use" and getattr(block, "name", None) == TOOL_NAME:
                raw = block.input.get("items") if isinstance(block.input, dict) else None
                items.extend(raw if isinstance(raw, list) else [])
        problems: list[str] = []
        unknown_ids = duplicates = invalid = 0
        results: dict[int, Enrichment] = {}
        for item in items:
            if not isinstance(item, dict):
                invalid += 1
                continue
            key = str(item.get("id", "")).strip()
            txn = by_id.get(key)
            if txn is None:
                unknown_ids += 1
                continue
            if txn.id in results:
                duplicates += 1  # the first valid answer stands
                continue
            answer = self._to_enrichment(item, txn)
            if answer is None:
                invalid += 1
                continue
            results[txn.id] = answer
        if response.stop_reason == "max_tokens":
            problems.append("response truncated (max_tokens)")
        for count, what in (
            (unknown_ids, "unknown id(s)"),
            (duplicates, "duplicate id(s)"),
            (invalid, "invalid item(s)"),
        ):
            if count:
                problems.append(f"{count} {what}")
        return results, problems

    def _to_enrichment(self, item: dict, txn: TxnInput) -> Enrichment | None:
        category = item.get("category")
        if category not in self.labels:
            return None
        try:
            confidence = min(1.0, max(0.0, float(item.get("confidence", 0.5))))
        except (TypeError, ValueError):
            confidence = 0.5
        method = item.get("payment_method")
        if method not in PAYMENT_METHODS:
            method = detect_payment_method(txn.description, txn.transaction_category)
        essential = item.get("essential")

        def text(name: str, limit: int) -> str | None:
            value = item.get(name)
            return value.strip()[:limit] or None if isinstance(value, str) else None

        answer = Enrichment(
            category=category,
            subcategory=text("subcategory", 64),
            merchant=text("merchant", 256),
            merchant_type=text("merchant_type", 64),
            essential=essential if isinstance(essential, bool) else None,
            payment_method=method,
            confidence=confidence,
            source="model",
            provider=self.provider,
            model=self.name,
        )
        return enforce_direction(answer, txn.direction, self.categories)
