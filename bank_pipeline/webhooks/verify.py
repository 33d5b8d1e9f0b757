"""Deciding whether a webhook request is genuine, fresh and well formed.

Order matters: the signature is checked before anything in the request is believed, so the
timestamp and body are only trusted once they are known to be TrueLayer's. Each failure is a
`WebhookRejected` with the HTTP status to answer (401 not authentic, 400 authentic but malformed,
503 our key fetch failed so the sender should retry), a `reason` from a fixed vocabulary (it keys
the rejection counters, so it never contains request data) and a `detail` in which every value
taken from the request is escaped and truncated (`untrusted.escape`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from truelayer_signing import HttpMethod, extract_jws_header, verify_with_jwks

from bank_pipeline.timestamps import parse_iso
from bank_pipeline.webhooks.jwks import JwksCache, JwksUnavailable
from bank_pipeline.webhooks.untrusted import escape

SIGNATURE_HEADER = "tl-signature"
TIMESTAMP_HEADER = "x-tl-webhook-timestamp"
# Tolerated clock difference for timestamps slightly ahead of ours.
FUTURE_SKEW_SECONDS = 60
# A TrueLayer signature is well under 2 KB; anything far longer is not one (and is not parsed).
MAX_SIGNATURE_CHARS = 8192


class WebhookRejected(Exception):
    """The request is not accepted: `status` is the HTTP answer, `reason` a fixed phrase (never
    request data), `detail` already escaped; both are safe to log and store."""

    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.status = status
        self.reason = reason[:64]
        self.detail = detail[:300]


@dataclass(frozen=True)
class VerifiedEvent:
    event_id: str
    event_type: str
    provider_account_id: str | None
    payload: dict[str, Any]
    body: str
    timestamp: dt.datetime


@dataclass(frozen=True)
class _Signature:
    value: str
    jws_header: Any
    jku: str
    kid: str


def _unauthorized(reason: str, detail: str = "") -> WebhookRejected:
    return WebhookRejected(401, reason, detail)


def _describe(exc: BaseException) -> str:
    """An exception as escaped text: library messages may quote the hostile header."""
    return escape(f"{exc.__class__.__name__}: {exc}", 160)


def parse_timestamp(raw: str) -> dt.datetime:
    """An RFC 3339 timestamp with an explicit offset, as a UTC datetime."""
    value = parse_iso(raw)
    if value.tzinfo is None:
        raise ValueError("timestamp has no UTC offset")
    return value.astimezone(dt.timezone.utc)


async def verify_webhook(
    *,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    jku_allowlist: list[str] | tuple[str, ...] | frozenset[str],
    jwks: JwksCache,
    max_age_seconds: float,
    now: Callable[[], dt.datetime],
) -> VerifiedEvent:
    """Verify a POSTed webhook; return the event or raise `WebhookRejected`.

    The cheap checks run on the event loop, the key lookup awaits without holding a thread,
    and the signature check (CPU) runs in the thread pool."""
    lowered = {key.lower(): value for key, value in headers.items()}
    signature = _read_signature(lowered, jku_allowlist)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _unauthorized("body is not UTF-8, cannot verify") from exc
    try:
        keys = await jwks.get(signature.jku, signature.kid)
    except JwksUnavailable as exc:
        raise WebhookRejected(503, "JWKS unavailable", escape(str(exc), 200)) from exc
    return await run_in_threadpool(_verify_signed, path, lowered, text, signature, keys, max_age_seconds, now)


def _read_signature(lowered: Mapping[str, str], jku_allowlist: Any) -> _Signature:
    value = lowered.get(SIGNATURE_HEADER)
    if not value:
        raise _unauthorized("missing Tl-Signature header")
    if len(value) > MAX_SIGNATURE_CHARS:
        raise _unauthorized("Tl-Signature too long", f"{len(value)} chars")
    try:
        jws_header = extract_jws_header(value)
    except Exception as exc:  # any header the library cannot parse is simply not a signature
        raise _unauthorized("unreadable Tl-Signature", _describe(exc)) from exc
    jku, kid = getattr(jws_header, "jku", None), getattr(jws_header, "kid", None)
    if not isinstance(jku, str) or not jku:
        raise _unauthorized("Tl-Signature has no jku")
    if not isinstance(kid, str) or not isinstance(getattr(jws_header, "tl_headers", None), str):
        raise _unauthorized("unreadable Tl-Signature", "bad kid or tl_headers")
    if jku not in jku_allowlist:
        raise _unauthorized("jku not on the allow-list", escape(jku))
    return _Signature(value=value, jws_header=jws_header, jku=jku, kid=kid)


def _verify_signed(
    path: str,
    lowered: dict[str, str],
    text: str,
    signature: _Signature,
    keys: Mapping[str, Any],
    max_age_seconds: float,
    now: Callable[[], dt.datetime],
) -> VerifiedEvent:
    try:
        (
            verify_with_jwks(keys, signature.jws_header)
            .set_method(HttpMethod.POST)
            .set_path(path)
            .add_headers(dict(lowered))
            # The timestamp must be covered by the signature, or a replay could refresh it.
            .add_required_header("X-TL-Webhook-Timestamp")
            .set_body(text)
            .verify(signature.value)
        )
    except Exception as exc:  # forged, wrong key, malformed key material: not authentic either way
        raise _unauthorized("signature verification failed", _describe(exc)) from exc

    try:
        timestamp = parse_timestamp(lowered[TIMESTAMP_HEADER])
        age = (now() - timestamp).total_seconds()
    except (KeyError, ValueError, OverflowError) as exc:
        raise _unauthorized("missing or unparseable X-TL-Webhook-Timestamp") from exc
    if age > max_age_seconds:
        raise _unauthorized("stale timestamp", f"{int(age)} s old (limit {int(max_age_seconds)} s)")
    if age < -FUTURE_SKEW_SECONDS:
        raise _unauthorized("timestamp in the future", f"{int(-age)} s ahead")

    return _parse_event(text, timestamp)


def _parse_event(text: str, timestamp: dt.datetime) -> VerifiedEvent:
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise WebhookRejected(400, "body is not JSON") from exc
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "body is not a JSON object")
    event_id, event_type = payload.get("event_id"), payload.get("event_type")
    if not _is_identifier(event_id, 256):
        raise WebhookRejected(400, "missing or invalid event_id")
    if not _is_identifier(event_type, 128):
        raise WebhookRejected(400, "missing or invalid event_type")
    account_id = payload.get("account_id")
    if account_id is not None and not _is_identifier(account_id, 256):
        raise WebhookRejected(400, "invalid account_id")
    return VerifiedEvent(
        event_id=event_id,
        event_type=event_type,
        provider_account_id=account_id,
        payload=payload,
        body=text,
        timestamp=timestamp,
    )


def _is_identifier(value: Any, max_chars: int) -> bool:
    """A non-blank printable string (no NUL or newline, which a log line or PostgreSQL would choke on)."""
    return isinstance(value, str) and bool(value.strip()) and len(value) <= max_chars and value.isprintable()
