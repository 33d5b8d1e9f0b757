"""The Starlette app that receives TrueLayer webhooks.

It verifies, records and answers - nothing else: it never starts a run (a Dagster sensor turns
stored events into runs), so a flood of webhooks cannot become a flood of bank calls.
Answers: 200 stored or duplicate (a replay is a no-op), 400 signed but malformed, 401 not
authentic (unsigned, forged, wrong key, jku not allow-listed, stale or future timestamp),
413 too large, 503 the allow-listed JWKS could not be fetched (the sender retries later).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bank_pipeline.db import utcnow
from bank_pipeline.webhooks.events import record_rejection, store_event
from bank_pipeline.webhooks.jwks import JwksCache, JwksFetcher
from bank_pipeline.webhooks.verify import WebhookRejected, verify_webhook

log = logging.getLogger(__name__)

DEFAULT_PATH = "/webhooks/truelayer"
MAX_BODY_BYTES = 64 * 1024

_ERROR_CODES = {400: "malformed_event", 401: "unauthorized", 413: "too_large", 503: "jwks_unavailable"}


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise WebhookRejected(413, f"body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise WebhookRejected(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_webhook_app(
    engine: Engine,
    *,
    jku_allowlist: list[str],
    max_age_seconds: float = 300,
    jwks_fetcher: JwksFetcher | None = None,
    path: str = DEFAULT_PATH,
    jwks_ttl_seconds: float = 300,
    now: Callable[[], dt.datetime] = utcnow,
) -> Starlette:
    """A Starlette app receiving webhooks at `path` (POST) and storing verified events in `engine`."""
    allowlist = frozenset(jku_allowlist)
    jwks = JwksCache(jwks_fetcher, ttl_seconds=jwks_ttl_seconds)

    def _process(url_path: str, headers: dict[str, str], body: bytes) -> JSONResponse:
        try:
            event = verify_webhook(
                path=url_path,
                headers=headers,
                body=body,
                jku_allowlist=allowlist,
                jwks=jwks,
                max_age_seconds=max_age_seconds,
                now=now,
            )
        except WebhookRejected as exc:
            return _reject(exc, body)
        stored = store_event(
            engine,
            event_id=event.event_id,
            event_type=event.event_type,
            provider_account_id=event.provider_account_id,
            payload=event.body,
        )
        log.info("webhook %s %s (%s)", event.event_type, event.event_id, "stored" if stored else "duplicate")
        return JSONResponse({"status": "stored" if stored else "duplicate", "event_id": event.event_id})

    def _reject(exc: WebhookRejected, body: bytes) -> JSONResponse:
        log.warning("webhook rejected with %s: %s", exc.status, exc.reason)
        record_rejection(engine, exc.status, exc.reason, body)
        return JSONResponse({"error": _ERROR_CODES.get(exc.status, "rejected")}, status_code=exc.status)

    async def receive(request: Request) -> JSONResponse:
        try:
            body = await _read_body(request, MAX_BODY_BYTES)
        except WebhookRejected as exc:
            return await run_in_threadpool(_reject, exc, b"")
        headers = {key: value for key, value in request.headers.items()}
        return await run_in_threadpool(_process, request.url.path, headers, body)

    app = Starlette(routes=[Route(path, receive, methods=["POST"])])
    app.state.jwks_cache = jwks
    return app
