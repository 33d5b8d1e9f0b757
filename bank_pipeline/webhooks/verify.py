"""Deciding whether a webhook request is genuine, fresh and well formed.

Order matters: the signature is checked before anything in the request is believed, so the
timestamp and body are only trusted once they are known to be TrueLayer's. Each failure is a
`WebhookRejected` with the HTTP status to answer (401 not authentic, 400 authentic but malformed,
503 our key fetch failed so the sender should retry) and a reason safe to store and log.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from truelayer_signing import HttpMethod, extract_jws_header, verify_with_jwks
from truelayer_signing.errors import TlSigningException

from bank_pipeline.webhooks.jwks import JwksCache, JwksUnavailable

SIGNATURE_HEADER = "tl-signature"
TIMESTAMP_HEADER = "x-tl-webhook-timestamp"
# Tolerated clock difference for timestamps slightly ahead of ours.
FUTURE_SKEW_SECONDS = 60


class WebhookRejected(Exception):
    """The request is not accepted; `status` is the HTTP answer, `reason` is safe to record."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason[:500]


@dataclass(frozen=True)
class VerifiedEvent:
    event_id: str
    event_type: str
    provider_account_id: str | None
    payload: dict[str, Any]
    body: str
    timestamp: dt.datetime


def _unauthorized(reason: str) -> WebhookRejected:
    return WebhookRejected(401, reason)


def parse_timestamp(raw: str) -> dt.datetime:
    """An RFC 3339 timestamp with an explicit offset, as a UTC datetime."""
    value = dt.datetime.fromisoformat(raw.strip())
    if value.tzinfo is None:
        raise ValueError("timestamp has no UTC offset")
    return value.astimezone(dt.timezone.utc)


def verify_webhook(
    *,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    jku_allowlist: list[str] | tuple[str, ...] | frozenset[str],
    jwks: JwksCache,
    max_age_seconds: float,
    now: Callable[[], dt.datetime],
) -> VerifiedEvent:
    """Verify a POSTed webhook; return the event or raise `WebhookRejected`."""
    lowered = {key.lower(): value for key, value in headers.items()}
    signature = lowered.get(SIGNATURE_HEADER)
    if not signature:
        raise _unauthorized("missing Tl-Signature header")
    try:
        jws_header = extract_jws_header(signature)
    except Exception as exc:  # any header the library cannot parse is simply not a signature
        raise _unauthorized(f"unreadable Tl-Signature: {exc.__class__.__name__}") from exc
    if not isinstance(jws_header.jku, str) or not jws_header.jku:
        raise _unauthorized("Tl-Signature has no jku")
    if not isinstance(jws_header.kid, str) or not isinstance(jws_header.tl_headers, str):
        raise _unauthorized("unreadable Tl-Signature: bad kid or tl_headers")
    if jws_header.jku not in jku_allowlist:
        raise _unauthorized(f"jku not on the allow-list: {jws_header.jku[:200]}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _unauthorized("body is not UTF-8, cannot verify") from exc
    try:
        keys = jwks.get(jws_header.jku, jws_header.kid)
    except JwksUnavailable as exc:
        raise WebhookRejected(503, str(exc)) from exc
    try:
        (
            verify_with_jwks(keys, jws_header)
            .set_method(HttpMethod.POST)
            .set_path(path)
            .add_headers(dict(lowered))
            # The timestamp must be covered by the signature, or a replay could refresh it.
            .add_required_header("X-TL-Webhook-Timestamp")
            .set_body(text)
            .verify(signature)
        )
    except TlSigningException as exc:
        raise _unauthorized(f"signature verification failed: {exc}") from exc
    except Exception as exc:  # malformed key material or signature: not authentic either way
        raise _unauthorized(f"signature verification failed: {exc.__class__.__name__}") from exc

    try:
        timestamp = parse_timestamp(lowered[TIMESTAMP_HEADER])
    except (KeyError, ValueError) as exc:
        raise _unauthorized("missing or unparseable X-TL-Webhook-Timestamp") from exc
    age = (now() - timestamp).total_seconds()
    if age > max_age_seconds:
        raise _unauthorized(f"stale timestamp: {int(age)} s old (limit {int(max_age_seconds)} s)")
    if age < -FUTURE_SKEW_SECONDS:
        raise _unauthorized(f"timestamp {int(-age)} s in the future")

    return _parse_event(text, timestamp)


def _parse_event(text: str, timestamp: dt.datetime) -> VerifiedEvent:
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise WebhookRejected(400, "body is not JSON") from exc
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "body is not a JSON object")
    event_id, event_type = payload.get("event_id"), payload.get("event_type")
    if not isinstance(event_id, str) or not event_id.strip() or len(event_id) > 256:
        raise WebhookRejected(400, "missing or invalid event_id")
    if not isinstance(event_type, str) or not event_type.strip() or len(event_type) > 128:
        raise WebhookRejected(400, "missing or invalid event_type")
    account_id = payload.get("account_id")
    if account_id is not None and not isinstance(account_id, str):
        raise WebhookRejected(400, "account_id must be a string")
    return VerifiedEvent(
        event_id=event_id,
        event_type=event_type,
        provider_account_id=account_id[:256] if account_id else None,
        payload=payload,
        body=text,
        timestamp=timestamp,
    )
