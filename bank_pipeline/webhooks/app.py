"""The Starlette app that receives TrueLayer webhooks.

It verifies, records and answers - nothing else: it never starts a run (a Dagster sensor turns
stored events into runs), so a flood of webhooks cannot become a flood of bank calls.
Answers: 200 stored or duplicate (a replay is a no-op), 400 signed but malformed, 401 not
authentic (unsigned, forged, wrong key, jku not allow-listed, stale or future timestamp, or
anything the verifier could not make sense of), 413 too large, 503 the allow-listed JWKS could
not be fetched or the event could not be stored (the sender retries later). Never a 500: every
value of an unauthenticated request is hostile, so it is only logged and stored escaped
(`untrusted`), and rejection log lines are throttled per reason so a flood cannot flood the log.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bank_pipeline.db import utcnow
from bank_pipeline.webhooks.events import store_event
from bank_pipeline.webhooks.jwks import JwksCache, JwksFetcher
from bank_pipeline.webhooks.rejections import RejectionCounter
from bank_pipeline.webhooks.untrusted import SOURCE_BUCKETS, escape, source_network
from bank_pipeline.webhooks.verify import WebhookRejected, verify_webhook

log = logging.getLogger(__name__)

DEFAULT_PATH = "/webhooks/truelayer"
MAX_BODY_BYTES = 64 * 1024

_ERROR_CODES = {400: "malformed_event", 401: "unauthorized", 413: "too_large", 503: "jwks_unavailable"}
# At most one log line per status and reason in this many seconds (the rest are counted in it).
LOG_INTERVAL_SECONDS = 10.0


async def _read_body(request: Request, limit: int) -> bytes:
    declared = (request.headers.get("content-length") or "").strip()
    if declared.isascii() and declared.isdigit() and (len(declared) > 12 or int(declared) > limit):
        raise WebhookRejected(413, "body too large", f"limit {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise WebhookRejected(413, "body too large", f"limit {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class _ThrottledLog:
    """Logs a rejection at most once per (status, reason) per interval, with how many it skipped.

    Reasons are a fixed vocabulary, so this holds a handful of keys whatever the traffic."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._last: dict[tuple[int, str], tuple[float, int]] = {}

    def warning(self, exc: WebhookRejected, source: str) -> None:
        key = (exc.status, exc.reason)
        now = self._clock()
        last, skipped = self._last.get(key, (float("-inf"), 0))
        if now - last < self._interval:
            self._last[key] = (last, skipped + 1)
            return
        self._last[key] = (now, 0)
        more = f" (+{skipped} more like it since the last such line)" if skipped else ""
        log.warning(
            "webhook rejected with %s: %s%s from %s%s",
            exc.status,
            exc.reason,
            f" [{exc.detail}]" if exc.detail else "",
            source,
            more,
        )


def create_webhook_app(
    engine: Engine,
    *,
    jku_allowlist: list[str],
    max_age_seconds: float = 300,
    jwks_fetcher: JwksFetcher | None = None,
    path: str = DEFAULT_PATH,
    jwks_ttl_seconds: float = 300,
    jwks_failure_ttl_seconds: float = 30,
    jwks_max_fetches_per_minute: int = 6,
    rejection_buckets: int = SOURCE_BUCKETS,
    now: Callable[[], dt.datetime] = utcnow,
) -> Starlette:
    """A Starlette app receiving webhooks at `path` (POST) and storing verified events in `engine`."""
    allowlist = frozenset(jku_allowlist)
    jwks = JwksCache(
        jwks_fetcher,
        ttl_seconds=jwks_ttl_seconds,
        failure_ttl_seconds=jwks_failure_ttl_seconds,
        max_fetches_per_minute=jwks_max_fetches_per_minute,
    )
    rejection_log = _ThrottledLog(LOG_INTERVAL_SECONDS)
    rejections = RejectionCounter(engine, buckets=rejection_buckets)

    async def _reject(exc: WebhookRejected, body: bytes, source: str) -> JSONResponse:
        rejection_log.warning(exc, source)
        await rejections.count(
            status_code=exc.status, reason=exc.reason, detail=exc.detail, source=source, body=body
        )
        return JSONResponse({"error": _ERROR_CODES.get(exc.status, "rejected")}, status_code=exc.status)

    async def receive(request: Request) -> JSONResponse:
        source = source_network(request.client.host if request.client else None)
        body = b""
        try:
            body = await _read_body(request, MAX_BODY_BYTES)
            event = await verify_webhook(
                path=request.url.path,
                headers=dict(request.headers.items()),
                body=body,
                jku_allowlist=allowlist,
                jwks=jwks,
                max_age_seconds=max_age_seconds,
                now=now,
            )
        except WebhookRejected as exc:
            return await _reject(exc, body, source)
        except Exception as exc:  # whatever else a hostile request provokes is still not authentic
            return await _reject(
                WebhookRejected(401, "unverifiable request", escape(exc.__class__.__name__)), body, source
            )
        try:
            stored = await run_in_threadpool(
                store_event,
                engine,
                event_id=event.event_id,
                event_type=event.event_type,
                provider_account_id=event.provider_account_id,
                payload=event.body,
            )
        except Exception as exc:  # the sender retries on 503; the event is not lost
            log.error("could not store webhook %s: %s", escape(event.event_id), exc.__class__.__name__)
            return JSONResponse({"error": "storage_unavailable"}, status_code=503)
        status = "stored" if stored else "duplicate"
        log.info("webhook %s %s (%s)", escape(event.event_type), escape(event.event_id), status)
        return JSONResponse({"status": status, "event_id": event.event_id})

    app = Starlette(routes=[Route(path, receive, methods=["POST"])])
    app.state.jwks_cache = jwks
    app.state.rejections = rejections
    return app
