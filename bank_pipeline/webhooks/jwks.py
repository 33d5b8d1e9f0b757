"""Fetching and caching the JWKS that verify webhook signatures.

Keys are cached per `jku` for a TTL so a burst of webhooks costs one fetch; a signature whose
`kid` is unknown triggers one refetch (TrueLayer rotates keys), but at most once per
`min_refetch_seconds`, so forged kids cannot make us hammer the key server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

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


class JwksCache:
    """Thread-safe per-URL cache of JWKS documents."""

    def __init__(
        self,
        fetcher: JwksFetcher | None = None,
        *,
        ttl_seconds: float = 300.0,
        min_refetch_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetcher = fetcher or fetch_jwks_http
        self._ttl = ttl_seconds
        self._min_refetch = min_refetch_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Mapping[str, Any]]] = {}
        self.fetches = 0

    def _fetch(self, url: str) -> Mapping[str, Any]:
        try:
            document = self._fetcher(url)
        except JwksUnavailable:
            raise
        except Exception as exc:  # a custom fetcher's failure is still "unavailable"
            raise JwksUnavailable(f"could not fetch JWKS from {url}: {exc.__class__.__name__}") from exc
        if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
            raise JwksUnavailable(f"{url} did not answer a JWKS document")
        self.fetches += 1
        self._entries[url] = (self._clock(), document)
        return document

    def get(self, url: str, kid: str) -> Mapping[str, Any]:
        """The JWKS for `url`, refreshed if stale or (once, rate-limited) if `kid` is not in it."""
        with self._lock:
            entry = self._entries.get(url)
            now = self._clock()
            if entry is None or now - entry[0] > self._ttl:
                return self._fetch(url)
            fetched_at, document = entry
            if not _has_kid(document, kid) and now - fetched_at >= self._min_refetch:
                return self._fetch(url)
            return document


def _has_kid(document: Mapping[str, Any], kid: str) -> bool:
    return any(isinstance(key, Mapping) and key.get("kid") == kid for key in document.get("keys", []))
