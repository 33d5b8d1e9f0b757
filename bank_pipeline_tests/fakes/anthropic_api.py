"""A local fake of Anthropic's Messages API (`POST /v1/messages`) on a real loopback HTTP server.

The official SDK is pointed at it by base URL, so tests exercise the real client: headers,
JSON bodies, status codes, `retry-after`. It answers with a `tool_use` block for the forced tool,
one item per transaction id found in the user message (by default: a plausible category chosen
from the tool's enum), and a `usage` computed deterministically from the request size (about
four characters a token; the system prompt + tools count as a cache write the first time a
prefix is seen and as a cache read afterwards, when marked `cache_control` and long enough).
`max_tokens` binds as it does on the real API: an answer that would need more output tokens is
cut there (the last items are lost) and says `stop_reason: "max_tokens"`.

Scriptable: `fail_next(k, status)` answers the next k requests with 429/529/500…;
`script(*behaviours)` alters the next successful responses one each: "shuffle", "reverse",
"drop" / ("drop", n), "extra", "invalid_category", "duplicate", "duplicate_conflict",
"no_tool". Everything received is kept in `requests`; `usage_totals` sums what was reported.

Message Batches (`POST /v1/messages/batches`, `GET /v1/messages/batches/{id}` and its
`/results` JSONL), shaped as Anthropic documents them: 1 to 100,000 requests `{"custom_id",
"params"}`, each custom_id unique and matching `^[a-zA-Z0-9_-]{1,64}$`, each answered like a
Messages call; a batch reports `in_progress` for `batch_polls` retrievals (default 0: ended at the
first), then `ended` with a `results_url`. Results come in no promised order (the fake gives them
last first); `batch_outcomes` scripts the next requests' result types ("errored", "expired",
"canceled"; default "succeeded"). Created batches are kept in `batches`.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
MAX_BATCH_REQUESTS = 100_000
_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    529: "overloaded_error",
}


def _tokens(value: Any) -> int:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), sort_keys=True)
    return max(1, math.ceil(len(text) / 4))


def default_answer(txn: dict, labels: list[str]) -> dict:
    """A deterministic, plausible answer: enough for tests that do not care about the label."""
    text = (txn.get("description") or "").casefold()
    credit = txn.get("direction") == "credit"
    guesses = [
        ("salary", "income"),
        ("refund", "refunds"),
        ("tesco", "groceries"),
        ("sainsbury", "groceries"),
        ("tfl", "transport"),
        ("uber", "transport"),
        ("netflix", "subscriptions"),
        ("pret", "dining"),
        ("gas", "utilities"),
        ("transfer", "transfers"),
    ]
    category = next((c for word, c in guesses if word in text), "transfers" if credit else "shopping")
    if category not in labels:
        category = "unknown"
    return {
        "category": category,
        "subcategory": None,
        "merchant": (txn.get("merchant_name") or txn.get("description") or "").split("  ")[0][:40] or None,
        "merchant_type": None,
        "essential": category in ("groceries", "utilities", "transport"),
        "payment_method": "card",
        "confidence": 0.8,
    }


class FakeAnthropic:
    def __init__(
        self, answer: Callable[[dict, list[str]], dict] = default_answer, min_cache_tokens: int = 1024
    ):
        self.answer = answer
        self.min_cache_tokens = min_cache_tokens
        self.requests: list[dict] = []  # every request body received (failures included)
        self.headers: list[dict] = []
        self.responses = 0  # successful (200) responses
        self.usage_totals = {
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        self.batches: dict[str, dict] = {}
        self.batch_polls = 0
        self.batch_outcomes: list[str] = []  # result types for the next batch requests, in order
        self._failures: list[int] = []
        self._script: list = []
        self._prefixes: set[str] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- scripting -------------------------------------------------------------------------

    def fail_next(self, count: int, status: int = 429) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def script(self, *behaviours) -> None:
        with self._lock:
            self._script.extend(behaviours)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.headers.clear()
            self.responses = 0
            for k in self.usage_totals:
                self.usage_totals[k] = 0

    @property
    def message_requests(self) -> list[dict]:
        """Messages API calls, whether sent directly or inside a Message Batch."""
        direct = [r for r in self.requests if "messages" in r]
        return direct + [r["params"] for b in self.batches.values() for r in b["requests"]]

    @property
    def direct_message_requests(self) -> list[dict]:
        return [r for r in self.requests if "messages" in r]

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeAnthropic:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):  # noqa: N802
                self._reply(*fake._handle_get(self.path, dict(self.headers)))

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                self._reply(*fake._handle(self.path, dict(self.headers), body))

            def _reply(self, status, payload, extra):
                if isinstance(payload, bytes):  # JSONL results
                    data, kind = payload, "application/binary"
                else:
                    data, kind = json.dumps(payload).encode(), "application/json"
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", f"req_fake_{len(fake.requests)}")
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-anthropic", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- the API ---------------------------------------------------------------------------

    def _error(self, status: int, message: str):
        extra = {"retry-after": "0"} if status in (429, 529) else {}
        if status >= 500:
            extra["x-should-retry"] = "true"
        body = {"type": "error", "error": {"type": _ERRORS.get(status, "api_error"), "message": message}}
        return status, body, extra

    def _handle(self, path: str, headers: dict, raw: bytes):
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            request = {}
        with self._lock:
            self.requests.append(request)
            self.headers.append({k.lower(): v for k, v in headers.items()})
            failure = self._failures.pop(0) if self._failures else None
        route = path.split("?")[0].rstrip("/")
        if route not in ("/v1/messages", "/v1/messages/batches"):
            return self._error(404, f"no route {path}")
        if not {k.lower() for k in headers} & {"x-api-key", "authorization"}:
            return self._error(401, "missing x-api-key")
        if failure:
            return self._error(failure, "scripted failure")
        if route == "/v1/messages/batches":
            return self._create_batch(request)
        return self._message(request)

    # --- Message Batches ---------------------------------------------------------------------

    def _batch_view(self, batch: dict) -> dict:
        done = batch["ended"]
        n = len(batch["requests"])
        return {
            "id": batch["id"],
            "type": "message_batch",
            "processing_status": "ended" if done else "in_progress",
            "request_counts": {
                "processing": 0 if done else n,
                "succeeded": batch["succeeded"] if done else 0,
                "errored": batch["errored"] if done else 0,
                "canceled": batch.get("canceled", 0) if done else 0,
                "expired": batch.get("expired", 0) if done else 0,
            },
            "created_at": batch["created_at"],
            "ended_at": batch["created_at"] if done else None,
            "expires_at": batch["expires_at"],
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{self.base_url}/v1/messages/batches/{batch['id']}/results" if done else None,
        }

    def _create_batch(self, request: dict):
        from bank_pipeline import clock

        requests = request.get("requests")
        if not isinstance(requests, list) or not requests:
            return self._error(400, "requests: Field required (a non-empty list)")
        if len(requests) > MAX_BATCH_REQUESTS:
            return self._error(400, f"requests: at most {MAX_BATCH_REQUESTS} items")
        ids = [r.get("custom_id") if isinstance(r, dict) else None for r in requests]
        valid = all(isinstance(i, str) and _CUSTOM_ID.fullmatch(i) for i in ids)
        if not valid or len(set(ids)) != len(ids):
            return self._error(
                400, "requests: every custom_id must be unique and match ^[a-zA-Z0-9_-]{1,64}$"
            )
        for r in requests:
            params = r.get("params")
            if not isinstance(params, dict) or any(
                k not in params for k in ("model", "max_tokens", "messages")
            ):
                return self._error(
                    400, f"requests.{r['custom_id']}.params: model, max_tokens and messages required"
                )
        now = clock.now()
        with self._lock:
            batch_id = f"msgbatch_fake_{len(self.batches) + 1:04d}"
            self.batches[batch_id] = {
                "id": batch_id,
                "requests": requests,
                "polls": 0,
                "ended": False,
                "results": None,
                "succeeded": 0,
                "errored": 0,
                "created_at": now.isoformat().replace("+00:00", "Z"),
                "expires_at": (now + datetime.timedelta(days=1)).isoformat().replace("+00:00", "Z"),
            }
            batch = self.batches[batch_id]
        return 200, self._batch_view(batch), {}

    def _handle_get(self, path: str, headers: dict):
        with self._lock:
            self.headers.append({k.lower(): v for k, v in headers.items()})
        if not {k.lower() for k in headers} & {"x-api-key", "authorization"}:
            return self._error(401, "missing x-api-key")
        parts = path.split("?")[0].rstrip("/").split("/")
        # /v1/messages/batches/{id}[/results]
        if len(parts) < 5 or parts[1:4] != ["v1", "messages", "batches"]:
            return self._error(404, f"no route {path}")
        batch = self.batches.get(parts[4])
        if batch is None:
            return (
                404,
                {"type": "error", "error": {"type": "not_found_error", "message": "no such batch"}},
                {},
            )
        if len(parts) == 5:
            with self._lock:
                batch["polls"] += 1
                if not batch["ended"] and batch["polls"] > self.batch_polls:
                    self._finish(batch)
            return 200, self._batch_view(batch), {}
        if len(parts) == 6 and parts[5] == "results":
            if not batch["ended"]:
                return self._error(400, "batch is still processing")
            return 200, b"".join(json.dumps(line).encode() + b"\n" for line in batch["results"]), {}
        return self._error(404, f"no route {path}")

    def _finish(self, batch: dict) -> None:
        """Answer every request of the batch (called with the lock held)."""
        self._lock.release()
        try:
            lines = []
            for r in batch["requests"]:
                with self._lock:
                    outcome = self.batch_outcomes.pop(0) if self.batch_outcomes else "succeeded"
                if outcome in ("expired", "canceled"):
                    lines.append({"custom_id": r["custom_id"], "result": {"type": outcome}})
                    continue
                if outcome == "errored":
                    _, body, _ = self._error(500, "scripted batch request failure")
                    lines.append({"custom_id": r["custom_id"], "result": {"type": "errored", "error": body}})
                    continue
                status, body, _ = self._message(r["params"], count=False)
                if status == 200:
                    lines.append(
                        {"custom_id": r["custom_id"], "result": {"type": "succeeded", "message": body}}
                    )
                else:
                    lines.append({"custom_id": r["custom_id"], "result": {"type": "errored", "error": body}})
        finally:
            self._lock.acquire()
        batch["results"] = lines[::-1]  # in no promised order: here, last first
        kinds = [line["result"]["type"] for line in lines]
        batch["succeeded"], batch["errored"] = kinds.count("succeeded"), kinds.count("errored")
        batch["expired"], batch["canceled"] = kinds.count("expired"), kinds.count("canceled")
        batch["ended"] = True

    # --- Messages ------------------------------------------------------------------------------

    def _message(self, request: dict, count: bool = True):
        for needed in ("model", "max_tokens", "messages"):
            if needed not in request:
                return self._error(400, f"{needed}: Field required")
        with self._lock:
            behaviour = self._script.pop(0) if self._script else None
        tool = (request.get("tools") or [{}])[0]
        item_schema = tool.get("input_schema", {}).get("properties", {}).get("items", {}).get("items", {})
        labels = item_schema.get("properties", {}).get("category", {}).get("enum", ["unknown"])
        transactions = self._transactions(request)
        items = [{"id": t.get("id"), **self.answer(t, labels)} for t in transactions]
        items, no_tool = self._apply(behaviour, items)
        content, truncated = self._content(items, no_tool, tool.get("name"), request["max_tokens"])
        usage = self._usage(request, content)
        with self._lock:
            self.responses += count
            for k, v in usage.items():
                self.usage_totals[k] += v
        body = {
            "id": f"msg_fake_{len(self.requests)}_{self.responses}",
            "type": "message",
            "role": "assistant",
            "model": request["model"],
            "content": content,
            "stop_reason": "max_tokens" if truncated else "end_turn" if no_tool else "tool_use",
            "stop_sequence": None,
            "usage": usage,
        }
        return 200, body, {}

    @staticmethod
    def _content(items: list[dict], no_tool: bool, name, max_tokens) -> tuple[list[dict], bool]:
        """The response's content blocks, cut to `max_tokens` output tokens (→ whether it was cut)."""
        if no_tool:
            return [{"type": "text", "text": "I cannot help with that."}], False
        limit = max_tokens if isinstance(max_tokens, int) else 0
        kept = list(items)
        while kept and _tokens([{"items": kept}]) + 5 > limit:  # as `_usage` counts output
            kept.pop()
        block = {"type": "tool_use", "id": "toolu_fake", "name": name, "input": {"items": kept}}
        return [block], len(kept) < len(items)

    @staticmethod
    def _transactions(request: dict) -> list[dict]:
        for message in request.get("messages", []):
            content = message.get("content")
            texts = [content] if isinstance(content, str) else [b.get("text", "") for b in content or []]
            for text in texts:
                start = text.find("{")
                if start >= 0:
                    try:
                        return json.loads(text[start:]).get("transactions", [])
                    except ValueError:
                        continue
        return []

    @staticmethod
    def _apply(behaviour, items: list[dict]) -> tuple[list[dict], bool]:
        name, arg = (
            (behaviour if isinstance(behaviour, tuple) else (behaviour, None)) if behaviour else (None, None)
        )
        if name in ("shuffle", "reverse"):
            return list(reversed(items)), False
        if name == "drop":
            return items[arg or 1 :], False
        if name == "extra":
            return items + [{**(items[0] if items else {}), "id": "999999999", "category": "shopping"}], False
        if name == "invalid_category":
            return [{**items[0], "category": "not_a_category"}] + items[1:], False
        if name == "duplicate":
            return items + [dict(items[0])], False
        if name == "duplicate_conflict":
            return items + [{**items[0], "category": "unknown"}], False
        if name == "no_tool":
            return [], True
        return items, False

    def _usage(self, request: dict, content: list[dict]) -> dict:
        system, tools = request.get("system"), request.get("tools")
        prefix_tokens = _tokens(system or "") + _tokens(tools or [])
        rest = _tokens(request.get("messages", [])) + 8
        marked = "cache_control" in json.dumps([system, tools])
        usage = {"input_tokens": rest, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        if marked and prefix_tokens >= self.min_cache_tokens:
            digest = hashlib.sha256(json.dumps([request.get("model"), system, tools]).encode()).hexdigest()
            with self._lock:
                seen = digest in self._prefixes
                self._prefixes.add(digest)
            usage["cache_read_input_tokens" if seen else "cache_creation_input_tokens"] = prefix_tokens
        else:
            usage["input_tokens"] += prefix_tokens
        usage["output_tokens"] = _tokens([b.get("input", b.get("text")) for b in content]) + 5
        return usage
