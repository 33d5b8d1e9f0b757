"""TrueLayer Data API v1 client (httpx): typed errors, retries with backoff, raw bodies kept for audit.

Retries (tenacity: exponential backoff with full jitter, `Retry-After` honoured up to `max_delay`,
every attempt counted and announced through `before_attempt`) cover 429
`provider_too_many_requests`, 5xx (except 501) and timeouts/connection errors. Everything else is
final at once — above all 429 `provider_request_limit_exceeded` (the bank's ~4 unattended calls per
account per day), where a retry would only burn tomorrow's patience.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import tenacity

from bank_pipeline.retries import parse_retry_after, retrying, wait_retry_after
from bank_pipeline.truelayer.errors import (
    AuthorizationRequired,
    InvalidRequest,
    MalformedResponse,
    NetworkError,
    RateLimited,
    ServerError,
    TrueLayerError,
    error_for_status,
    excerpt,
)
from bank_pipeline.truelayer.models import TransactionsResponse
from bank_pipeline.truelayer.windows import as_date, check_range

__all__ = ["DataClient", "RetryPolicy", "TransactionsResponse", "parse_retry_after"]

log = logging.getLogger(__name__)

KINDS = {"account": "accounts", "card": "cards"}


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts a call gets, and how long to wait between them: exponential backoff with
    full jitter (`base_delay` doubling, at most `max_delay`), or the server's `Retry-After` (capped
    at `max_delay`) when it sent one."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0

    def wait(self) -> wait_retry_after:
        """The tenacity wait strategy for this policy."""
        return wait_retry_after(
            lambda exc: getattr(exc, "retry_after", None),
            tenacity.wait_random_exponential(multiplier=self.base_delay, max=self.max_delay),
            self.max_delay,
        )


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, (RateLimited, ServerError)) and exc.status_code != 501 and not exc.final


class DataClient:
    """Data API v1. `token_provider()` is called before every attempt (so a refreshed token is used)."""

    def __init__(
        self,
        data_url: str,
        token_provider: Callable[[], str],
        *,
        psu_ip: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        on_authorization_required: Callable[[AuthorizationRequired], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.data_url = data_url.rstrip("/")
        self.token_provider = token_provider
        self.psu_ip = psu_ip
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.on_authorization_required = on_authorization_required
        self.calls_made = 0
        # Called before every attempt that would reach the bank, retries included (the unattended
        # budget reserves each one there); raising stops the request before it is sent.
        self.before_attempt: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)

    # --- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DataClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _count(self) -> None:
        with self._lock:
            self.calls_made += 1

    def _send(self, path: str, params: dict[str, str] | None) -> tuple[httpx.Response, int]:
        """GET with retries; returns the 2xx response and the number of attempts it took."""
        policy = self.retry
        loop = retrying(
            attempts=policy.max_attempts,
            retry_if=_retryable,
            wait=policy.wait(),
            log=log,
            what=f"TrueLayer GET {path}",
            describe=lambda exc: getattr(exc, "error", None) or getattr(exc, "status_code", None),
        )
        try:
            for attempt in loop:
                with attempt:
                    number = attempt.retry_state.attempt_number
                    return self._attempt(path, params, number), number
        except AuthorizationRequired as error:
            if self.on_authorization_required:
                self.on_authorization_required(error)
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, path: str, params: dict[str, str] | None, attempt: int) -> httpx.Response:
        """One GET: the 2xx response, or the typed error (with the server's `Retry-After`)."""
        try:
            token = self.token_provider()
        except TrueLayerError as exc:
            exc.final = True  # a refresh that failed made its own attempts: one set, not one per data attempt
            raise
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if self.psu_ip:
            headers["X-PSU-IP"] = self.psu_ip
        if self.before_attempt is not None:
            self.before_attempt()
        self._count()
        try:
            response = self._http.get(self.data_url + path, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            raise NetworkError.of(
                f"TrueLayer GET {path} timed out after {self.timeout:g}s", exc, path=path, attempt=attempt, error="timeout"
            ) from None
        except httpx.TransportError as exc:
            raise NetworkError.of(
                f"TrueLayer GET {path}: could not reach {httpx.URL(self.data_url).host}", exc, path=path, attempt=attempt
            ) from None
        if 200 <= response.status_code < 300:
            return response
        error = error_for_status(response.status_code, response.text, method="GET", path=path, attempts=attempt)
        error.retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise error

    def _get(self, path: str, params: dict[str, str] | None = None) -> tuple[httpx.Response, Any, int]:
        response, attempts = self._send(path, params)
        text = response.text
        if response.status_code == 202:
            raise MalformedResponse(
                f"TrueLayer GET {path} answered 202 (an asynchronous request); this client only makes "
                "synchronous calls",
                status_code=202,
                error="unexpected_async_response",
                attempts=attempts,
                path=path,
            )
        try:
            data = json.loads(text)
        except ValueError:
            raise MalformedResponse(
                f"TrueLayer GET {path} returned a body that is not valid JSON "
                f"({len(text)} chars, starts {excerpt(text, 80)!r})",
                status_code=response.status_code,
                error="malformed_response",
                attempts=attempts,
                path=path,
            ) from None
        return response, data, attempts

    def _results(self, path: str, params: dict[str, str] | None = None) -> tuple[httpx.Response, dict, int]:
        response, data, attempts = self._get(path, params)
        if not isinstance(data, dict) or not isinstance(data.get("results"), list):
            raise MalformedResponse(
                f"TrueLayer GET {path} returned JSON without a `results` list "
                f"(starts {excerpt(response.text, 80)!r})",
                status_code=response.status_code,
                error="malformed_response",
                attempts=attempts,
                path=path,
            )
        bad = [i for i, row in enumerate(data["results"]) if not isinstance(row, dict)]
        if bad:
            raise MalformedResponse(
                f"TrueLayer GET {path} returned results that are not objects (at positions {bad[:5]})",
                status_code=response.status_code,
                error="malformed_response",
                attempts=attempts,
                path=path,
            )
        return response, data, attempts

    def _list(self, path: str) -> list[dict]:
        return self._results(path)[1]["results"]

    def _one(self, path: str) -> dict:
        results = self._list(path)
        if not results:
            raise MalformedResponse(
                f"TrueLayer GET {path} returned an empty `results` list",
                error="malformed_response",
                path=path,
            )
        return results[0]

    @staticmethod
    def _base(kind: str, account_id: str) -> str:
        if kind not in KINDS:
            raise InvalidRequest(f"kind must be 'account' or 'card', got {kind!r}")
        if not account_id or "/" in str(account_id):
            raise InvalidRequest(f"invalid {kind} id {account_id!r}")
        return f"/{KINDS[kind]}/{account_id}"

    # --- endpoints --------------------------------------------------------------------------

    def me(self) -> dict:
        """The connection's metadata (`/me`): provider, credentials_id, consent_expires_at, scopes."""
        return self._one("/me")

    def info(self) -> list[dict]:
        return self._list("/info")

    def accounts(self) -> list[dict]:
        return self._list("/accounts")

    def account(self, account_id: str) -> dict:
        return self._one(self._base("account", account_id))

    def cards(self) -> list[dict]:
        return self._list("/cards")

    def card(self, card_id: str) -> dict:
        return self._one(self._base("card", card_id))

    def balance(self, kind: str, account_id: str) -> dict:
        return self._one(self._base(kind, account_id) + "/balance")

    def standing_orders(self, account_id: str) -> list[dict]:
        return self._list(self._base("account", account_id) + "/standing_orders")

    def direct_debits(self, account_id: str) -> list[dict]:
        return self._list(self._base("account", account_id) + "/direct_debits")

    def transactions(
        self, kind: str, account_id: str, date_from: dt.date | str, date_to: dt.date | str
    ) -> TransactionsResponse:
        """Booked transactions in the inclusive window [date_from, date_to] (one call, no pagination)."""
        start, end = as_date(date_from, "date_from"), as_date(date_to, "date_to")
        check_range(start, end)
        path = self._base(kind, account_id) + "/transactions"
        return self._transactions(path, {"from": start.isoformat(), "to": end.isoformat()})

    def pending_transactions(self, kind: str, account_id: str) -> TransactionsResponse:
        return self._transactions(self._base(kind, account_id) + "/transactions/pending", None)

    def _transactions(self, path: str, params: dict[str, str] | None) -> TransactionsResponse:
        response, data, attempts = self._results(path, params)
        status = data.get("status")
        return TransactionsResponse(
            results=data["results"],
            status=status if isinstance(status, str) else None,
            body=response.text,
            http_status=response.status_code,
            attempts=attempts,
        )
