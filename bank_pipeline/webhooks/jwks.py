"""Fetching and caching the JWKS that verify webhook signatures.

Unauthenticated requests decide when we fetch, so every fetch is bounded: only allow-listed URLs
(checked before `get` is called), one fetch in flight per URL (others await it on the event
loop, holding no thread and no lock), a failure cached for `failure_ttl_seconds`, and at most
`max_fetches_per_minute` per URL. Keys are cached for a TTL; an unknown `kid` (TrueLayer rotates
keys) refetches at most once per `min_refetch_seconds`. While a refresh is in flight or failing,
the previous document keeps verifying for up to `stale_limit_seconds`, so a slow or broken key
server never delays webhooks signed with keys we already hold.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool

JwksFetcher = Callable[[str], Mapping[str, Any]]


class JwksUnavailable(Exception):
    """The allow-listed JWKS could not be fetched (network error, bad status, not a JWKS)."""


def fetch_jwks_http(url: str, timeout: float = 10.0) -> Mapping[str, Any]:
    """GET the JWKS document; no redirects (the allow-list names the exact URL)."""
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=False)
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise JwksUnavailable(f"could not fetch JWKS from {url}: {exc.__class__.__name__}") from exc
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise JwksUnavailable(f"{url} did not answer a JWKS document")
    return document


@dataclass
class _Entry:
    document: Mapping[str, Any] | None = None
    fetched_at: float = float("-inf")
    failed_at: float = float("-inf")
    failure: str = ""
    fetch_times: deque[float] = field(default_factory=deque)
    inflight: asyncio.Future[Mapping[str, Any]] | None = None


class JwksCache:
    """Per-URL cache of JWKS documents, used from the receiver's event loop."""

    def __init__(
        self,
        fetcher: JwksFetcher | None = None,
        *,
        ttl_seconds: float = 300.0,
        min_refetch_seconds: float = 10.0,
        failure_ttl_seconds: float = 30.0,
        max_fetches_per_minute: int = 6,
        stale_limit_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetcher = fetcher or fetch_jwks_http
        self._ttl = ttl_seconds
        self._min_refetch = min_refetch_seconds
        self._failure_ttl = failure_ttl_seconds
        self._max_per_minute = max_fetches_per_minute
        self._stale_limit = stale_limit_seconds
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self.fetches = 0  # successful fetches
        self.attempts = 0  # every fetch started, failed or not

    async def get(self, url: str, kid: str) -> Mapping[str, Any]:
        """The JWKS for `url` (an allow-listed URL): cached, refreshed when stale or, rate-limited,
        when `kid` is not in it. Raises `JwksUnavailable` when no usable document can be had."""
        entry = self._entries.setdefault(url, _Entry())
        now = self._clock()
        document, age = entry.document, now - entry.fetched_at
        has_kid = document is not None and _has_kid(document, kid)
        if document is not None and age <= self._ttl and has_kid:
            return document
        wanted = document is None or age > self._ttl or age >= self._min_refetch
        if entry.inflight is None and wanted and self._may_fetch(entry, now):
            entry.inflight = asyncio.ensure_future(self._fetch(url, entry))
            entry.inflight.add_done_callback(_consume_exception)
        usable = document is not None and age <= self._ttl + self._stale_limit
        if entry.inflight is not None and not (usable and has_kid):
            return await asyncio.shield(entry.inflight)
        if usable:
            return document  # type: ignore[return-value]  # an unknown kid then fails verification
        raise JwksUnavailable(entry.failure or f"JWKS fetches from {url} are rate limited; retry later")

    def _may_fetch(self, entry: _Entry, now: float) -> bool:
        if now - entry.failed_at < self._failure_ttl:
            return False
        while entry.fetch_times and now - entry.fetch_times[0] >= 60:
            entry.fetch_times.popleft()
        return len(entry.fetch_times) < self._max_per_minute

    async def _fetch(self, url: str, entry: _Entry) -> Mapping[str, Any]:
        entry.fetch_times.append(self._clock())
        self.attempts += 1
        try:
            try:
                document = await run_in_threadpool(self._fetcher, url)
            except JwksUnavailable:
                raise
            except Exception as exc:  # a custom fetcher's failure is still "unavailable"
                raise JwksUnavailable(f"could not fetch JWKS from {url}: {exc.__class__.__name__}") from exc
            if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
                raise JwksUnavailable(f"{url} did not answer a JWKS document")
        except JwksUnavailable as exc:
            entry.failed_at, entry.failure = self._clock(), str(exc)
            raise
        finally:
            entry.inflight = None
        entry.document, entry.fetched_at, entry.failure = document, self._clock(), ""
        self.fetches += 1
        return document


def _consume_exception(future: asyncio.Future) -> None:
    """A refresh nobody awaited (others used the previous keys) must not warn 'never retrieved'."""
    if not future.cancelled():
        future.exception()


def _has_kid(document: Mapping[str, Any], kid: str) -> bool:
    return any(isinstance(key, Mapping) and key.get("kid") == kid for key in document.get("keys", []))
