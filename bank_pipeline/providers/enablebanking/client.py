"""Enable Banking API client (httpx): a fresh-enough RS256 JWT on every call, typed errors,
retries with backoff, transactions followed page by page to the end.

Retries (the same policy as TrueLayer's client) cover 429s other than the bank's daily limit, 5xx
and `ASPSP_ERROR`/`ASPSP_TIMEOUT`, and timeouts/connection errors on reads (GET); a POST or DELETE
is retried only when it was refused unprocessed (429). `ASPSP_RATE_LIMIT_EXCEEDED` — the bank's few unattended
reads per account per day — is final at once. Reads with the user present (`Attended`) carry the
`Psu-Ip-Address` and `Psu-User-Agent` headers, which tell Enable Banking and the bank that the read
does not count against that budget.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import httpx

from bank_pipeline import clock
from bank_pipeline.providers.base import Attended, Rows
from bank_pipeline.providers.enablebanking.errors import WindowNotServed, error_for_response
from bank_pipeline.providers.enablebanking.redaction import install_session_redaction
from bank_pipeline.providers.enablebanking.signing import ApplicationKey
from bank_pipeline.retries import parse_retry_after, retrying
from bank_pipeline.truelayer.client import RetryPolicy
from bank_pipeline.truelayer.errors import (
    InvalidRequest,
    MalformedResponse,
    NetworkError,
    RateLimited,
    ServerError,
    excerpt,
)
from bank_pipeline.truelayer.windows import check_range

__all__ = ["API_URL", "EnableBankingClient", "SHORTER_WINDOWS", "TRANSACTION_STATUSES"]

log = logging.getLogger(__name__)
install_session_redaction()

API_URL = "https://api.enablebanking.com"
TRANSACTION_STATUSES = ("BOOK", "PDNG")
# Days of history asked for again, in turn, when a bank answers `WRONG_TRANSACTIONS_PERIOD`:
# banks that serve only the last 90 days count them differently, so a little under first.
SHORTER_WINDOWS = (89, 60, 30)
# A listing longer than this many pages is a provider fault (a continuation loop), not data.
MAX_PAGES = 10_000


def _retryable_read(exc: BaseException) -> bool:
    return isinstance(exc, (RateLimited, ServerError)) and exc.status_code != 501


def _retryable_write(exc: BaseException) -> bool:
    return isinstance(exc, RateLimited)


def psu_headers(attended: Attended | None) -> dict[str, str]:
    """The headers that say the user is present (none for an unattended read)."""
    if attended is None:
        return {}
    return {"Psu-Ip-Address": attended.ip_address, "Psu-User-Agent": attended.user_agent}


def _repeat_key(row: dict) -> str | None:
    """Identity of a row for dropping exact repeats: its entry reference and everything it says
    except `transaction_id` (which Enable Banking may change between calls). None: cannot tell."""
    reference = row.get("entry_reference")
    if not isinstance(reference, str) or not reference:
        return None
    rest = {k: v for k, v in row.items() if k != "transaction_id"}
    return json.dumps(rest, sort_keys=True, separators=(",", ":"))


class EnableBankingClient:
    """Enable Banking's AIS endpoints for one application."""

    def __init__(
        self,
        key: ApplicationKey,
        api_url: str = API_URL,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.key = key
        self.api_url = api_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.calls_made = 0
        # Called before every attempt of an account read (balances, transactions), retries
        # included, so a budget can reserve each; raising stops the request before it is sent.
        self.before_attempt: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)

    # --- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EnableBankingClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EnableBankingClient(api_url={self.api_url!r}, application_id={self.key.application_id!r})"

    def _call(
        self,
        method: str,
        path: str,
        *,
        shown: str | None = None,
        params: dict[str, str] | None = None,
        body: dict | None = None,
        attended: Attended | None = None,
        budgeted: bool = False,
    ) -> tuple[Any, int]:
        """One request with retries: (parsed JSON body, attempts). `shown` is the path as errors
        and logs name it (a session id replaced by a placeholder); `budgeted` reads go through
        `before_attempt`."""
        shown = shown or path
        loop = retrying(
            attempts=self.retry.max_attempts,
            retry_if=_retryable_read if method == "GET" else _retryable_write,
            wait=self.retry.wait(),
            log=log,
            what=f"Enable Banking {method} {shown}",
            describe=lambda exc: getattr(exc, "error", None) or getattr(exc, "status_code", None),
        )
        for attempt in loop:
            with attempt:
                number = attempt.retry_state.attempt_number
                response = self._attempt(method, path, shown, params, body, attended, budgeted, number)
                try:
                    return response.json(), number
                except ValueError:
                    raise MalformedResponse(
                        f"Enable Banking {method} {shown} returned a body that is not valid JSON "
                        f"({len(response.text)} chars, starts {excerpt(response.text, 80)!r})",
                        status_code=response.status_code,
                        error="malformed_response",
                        attempts=number,
                        path=shown,
                    ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(
        self,
        method: str,
        path: str,
        shown: str,
        params: dict[str, str] | None,
        body: dict | None,
        attended: Attended | None,
        budgeted: bool,
        attempt: int,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.key.token()}", "Accept": "application/json"}
        headers.update(psu_headers(attended))
        if budgeted and self.before_attempt is not None:
            self.before_attempt()
        with self._lock:
            self.calls_made += 1
        try:
            response = self._http.request(method, self.api_url + path, params=params, json=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise NetworkError.of(
                f"Enable Banking {method} {shown} timed out after {self.timeout:g}s",
                exc, path=shown, attempt=attempt, error="timeout",
            ) from None
        except httpx.TransportError as exc:
            raise NetworkError.of(
                f"Enable Banking {method} {shown}: could not reach {httpx.URL(self.api_url).host}",
                exc, path=shown, attempt=attempt,
            ) from None
        if 200 <= response.status_code < 300:
            return response
        error = error_for_response(response.status_code, response.text, method=method, path=shown, attempts=attempt)
        error.retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise error

    @staticmethod
    def _malformed(method: str, path: str, what: str) -> MalformedResponse:
        return MalformedResponse(f"Enable Banking {method} {path} returned {what}", error="malformed_response", path=path)

    @staticmethod
    def _account_path(uid: str, tail: str) -> str:
        if not uid or "/" in uid or "?" in uid:
            raise InvalidRequest(f"invalid Enable Banking account uid {uid!r}")
        return f"/accounts/{uid}/{tail}"

    @staticmethod
    def _session_path(session_id: str) -> str:
        if not session_id or "/" in session_id or "?" in session_id:
            raise InvalidRequest("invalid Enable Banking session id")
        return f"/sessions/{session_id}"

    # --- application and banks ---------------------------------------------------------------

    def application(self) -> dict:
        """The application the JWT names (its redirect URLs, environment, whether it is active)."""
        data, _ = self._call("GET", "/application")
        if not isinstance(data, dict):
            raise self._malformed("GET", "/application", "something other than an object")
        return data

    def aspsps(self, country: str) -> list[dict]:
        """The banks (ASPSPs) of `country` that offer account information."""
        data, _ = self._call("GET", "/aspsps", params={"country": country.upper(), "service": "AIS"})
        banks = data.get("aspsps") if isinstance(data, dict) else None
        if not isinstance(banks, list) or not all(isinstance(b, dict) for b in banks):
            raise self._malformed("GET", "/aspsps", "no `aspsps` list of objects")
        return banks

    # --- consent ----------------------------------------------------------------------------

    def start_authorization(
        self,
        *,
        aspsp_name: str,
        country: str,
        redirect_url: str,
        state: str,
        valid_until: dt.datetime,
        psu_type: str = "personal",
    ) -> dict:
        """`POST /auth`: `{url, authorization_id, ...}`; the user goes to `url`, the bank sends them
        back to `redirect_url?code=...&state=...`."""
        if valid_until.tzinfo is None:
            raise InvalidRequest("valid_until must carry a timezone")
        body = {
            "access": {"valid_until": valid_until.astimezone(dt.timezone.utc).isoformat()},
            "aspsp": {"name": aspsp_name, "country": country.upper()},
            "state": state,
            "redirect_url": redirect_url,
            "psu_type": psu_type,
        }
        data, _ = self._call("POST", "/auth", body=body)
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            raise self._malformed("POST", "/auth", "no authorisation `url`")
        return data

    def authorize_session(self, code: str) -> dict:
        """`POST /sessions {code}`: the session (`session_id`, `accounts`, `access.valid_until`)."""
        data, _ = self._call("POST", "/sessions", body={"code": code})
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("session_id"), str)
            or not isinstance(data.get("accounts"), list)
        ):
            raise self._malformed("POST", "/sessions", "no `session_id` and `accounts`")
        return data

    def session(self, session_id: str) -> dict:
        data, _ = self._call("GET", self._session_path(session_id), shown="/sessions/{session_id}")
        if not isinstance(data, dict):
            raise self._malformed("GET", "/sessions/{session_id}", "something other than an object")
        return data

    def delete_session(self, session_id: str) -> None:
        """End the session (and, where the bank allows, its consent)."""
        self._call("DELETE", self._session_path(session_id), shown="/sessions/{session_id}")

    # --- account reads ---------------------------------------------------------------------

    def balances(self, uid: str, *, attended: Attended | None = None) -> list[dict]:
        path = self._account_path(uid, "balances")
        data, _ = self._call("GET", path, attended=attended, budgeted=True)
        balances = data.get("balances") if isinstance(data, dict) else None
        if not isinstance(balances, list) or not all(isinstance(b, dict) for b in balances):
            raise self._malformed("GET", path, "no `balances` list of objects")
        return balances

    def transactions_page(
        self,
        uid: str,
        *,
        date_from: dt.date | None = None,
        date_to: dt.date | None = None,
        status: str | None = None,
        continuation_key: str | None = None,
        attended: Attended | None = None,
    ) -> tuple[list[dict], str | None, int]:
        """One page: (rows, next continuation key or None, attempts)."""
        path = self._account_path(uid, "transactions")
        params: dict[str, str] = {}
        if date_from is not None:
            params["date_from"] = date_from.isoformat()
        if date_to is not None:
            params["date_to"] = date_to.isoformat()
        if status is not None:
            if status not in TRANSACTION_STATUSES:
                raise InvalidRequest(f"transaction status must be one of {', '.join(TRANSACTION_STATUSES)}, got {status!r}")
            params["transaction_status"] = status
        if continuation_key:
            params["continuation_key"] = continuation_key
        data, attempts = self._call("GET", path, params=params, attended=attended, budgeted=True)
        rows = data.get("transactions") if isinstance(data, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise self._malformed("GET", path, "no `transactions` list of objects")
        key = data.get("continuation_key")
        if key is not None and not isinstance(key, str):
            raise self._malformed("GET", path, "a `continuation_key` that is not a string")
        return rows, (key or None), attempts

    def transactions(
        self,
        uid: str,
        date_from: dt.date | None,
        date_to: dt.date | None,
        *,
        status: str | None = "BOOK",
        attended: Attended | None = None,
    ) -> Rows:
        """Every page of the listing, in order. Rows an earlier page already sent, identical, are
        dropped (`Rows.repeats`); distinct rows that share an entry reference are all kept."""
        if date_from is not None and date_to is not None:
            check_range(date_from, date_to)
        rows: list[dict] = []
        seen: set[str] = set()
        keys_seen: set[str] = set()
        key: str | None = None
        calls = pages = repeats = 0
        while True:
            page, key, attempts = self.transactions_page(
                uid, date_from=date_from, date_to=date_to, status=status, continuation_key=key, attended=attended
            )
            calls += attempts
            pages += 1
            for row in page:
                identity = _repeat_key(row)
                if identity is not None and identity in seen:
                    repeats += 1
                    continue
                if identity is not None:
                    seen.add(identity)
                rows.append(row)
            if key is None:
                break
            if key in keys_seen or pages >= MAX_PAGES:
                raise self._malformed(
                    "GET", self._account_path(uid, "transactions"), f"a continuation key loop after {pages} pages"
                )
            keys_seen.add(key)
        if repeats:
            log.info("Enable Banking: dropped %d repeated row(s) from %d page(s) of one listing", repeats, pages)
        return Rows(rows, date_from, date_to, calls=calls, pages=pages, repeats=repeats)

    def transactions_served(
        self,
        uid: str,
        date_from: dt.date,
        date_to: dt.date,
        *,
        status: str | None = "BOOK",
        attended: Attended | None = None,
        shorter: tuple[int, ...] = SHORTER_WINDOWS,
    ) -> Rows:
        """`transactions` for the window, or for as much of its end as the bank serves: on
        `WRONG_TRANSACTIONS_PERIOD` the start moves up to the day the bank names (when it does),
        else to the last 89, then 60, then 30 days before today; the start only ever moves
        forward. Raises `WindowNotServed` when no part of the window is served."""
        check_range(date_from, date_to)
        try:
            return self.transactions(uid, date_from, date_to, status=status, attended=attended)
        except WindowNotServed as refused:
            last = refused
        today = clock.today_utc()
        tried = date_from
        starts = [today - dt.timedelta(days=days - 1) for days in shorter]
        for _ in range(len(starts) + 1):
            named = last.corrected_from
            candidates = ([named] if named is not None else []) + starts
            start = next((max(date_from, s) for s in candidates if max(date_from, s) > tried), None)
            if start is None or start > date_to:
                raise last
            tried = start
            log.warning(
                "Enable Banking: the bank does not serve transactions from %s; asking from %s",
                date_from.isoformat(), start.isoformat(),
            )
            try:
                return self.transactions(uid, start, date_to, status=status, attended=attended)
            except WindowNotServed as refused:
                last = refused
        raise last
