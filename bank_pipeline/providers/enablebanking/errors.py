"""Enable Banking's error envelope `{message, code, error, detail}` mapped to the project's
provider error types (`bank_pipeline.truelayer.errors`), so the pipeline handles both providers'
failures alike.

Messages carry Enable Banking's error code and message, the HTTP status and the request path (with
any session id replaced by `{session_id}`) — never the JWT, the private key or a session id.
"""

from __future__ import annotations

import datetime as dt
import json
import re

from bank_pipeline.truelayer.errors import (
    AuthorizationRequired,
    InvalidRequest,
    ProviderLimitExceeded,
    RateLimited,
    ServerError,
    TrueLayerError,
    excerpt,
)

# The session is over: only a new consent (`POST /auth`) brings the accounts back.
SESSION_OVER = {"EXPIRED_SESSION", "CLOSED_SESSION", "REVOKED_SESSION", "SESSION_DOES_NOT_EXIST", "INVALID_ACCOUNT_ID"}
# The application itself was refused: its id or its key is wrong, or it is not active.
APPLICATION_REFUSED = {"UNAUTHORIZED_ACCESS", "ACCESS_DENIED", "AUTHORIZATION_NOT_PROVIDED"}
# The bank (or Enable Banking in front of it) failed or timed out: worth another attempt.
BANK_FAILED = {"ASPSP_ERROR", "ASPSP_TIMEOUT"}


# Some banks' refusal of a window comes through in their own shape: `{"code": "PERIOD_INVALID",
# "detail": "dateFrom=...,dateTo=..."}` rather than `{"error": "WRONG_TRANSACTIONS_PERIOD"}`.
PERIOD_REFUSED = {"WRONG_TRANSACTIONS_PERIOD", "PERIOD_INVALID"}


class WindowNotServed(InvalidRequest):
    """`WRONG_TRANSACTIONS_PERIOD`: the bank does not serve transactions that far back.
    `corrected_from`: the first day it does serve, when it said so (`detail.date_from`)."""

    corrected_from: dt.date | None = None


def parse_error_body(text: str) -> tuple[str | None, str | None, object]:
    """(error code, message, detail) from an error body, tolerating non-JSON. A string `code`
    stands for the error code when `error` is absent."""
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if not isinstance(error, str) and isinstance(data.get("code"), str):
            error = data["code"]
        message = data.get("message") or data.get("title")
        return (
            error if isinstance(error, str) else None,
            excerpt(message) if isinstance(message, str) else None,
            data.get("detail"),
        )
    return None, (excerpt(text) if text else None), None


def corrected_from(detail: object) -> dt.date | None:
    """The first day a bank says it serves, from a refusal's `detail` (`{"date_from": ...}`)."""
    value = detail.get("date_from") if isinstance(detail, dict) else None
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value[:10]):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def error_for_response(status: int, body: str, *, method: str, path: str, attempts: int = 1) -> TrueLayerError:
    """The typed error for a non-2xx Enable Banking response."""
    error, description, detail = parse_error_body(body)
    kwargs = dict(status_code=status, error=error, error_description=description, attempts=attempts, path=path)
    message = f"Enable Banking {method} {path} failed"
    if error in SESSION_OVER:
        hint = "the bank consent has ended and needs granting again: run `bank-pipeline connect`"
        return AuthorizationRequired(f"{message} ({hint})", **kwargs)
    if error in APPLICATION_REFUSED or (status == 401 and error is None):
        return InvalidRequest(
            f"{message}: Enable Banking refused the application "
            "(check the application id and that the private key file is the one registered for it)",
            **kwargs,
        )
    if error in PERIOD_REFUSED:
        refused = WindowNotServed(f"{message}: the bank does not serve transactions for this period", **kwargs)
        refused.corrected_from = corrected_from(detail)
        return refused
    if error == "ASPSP_RATE_LIMIT_EXCEEDED":
        return ProviderLimitExceeded(
            f"{message}: the bank's daily limit of unattended reads is used up; try again tomorrow", **kwargs
        )
    if status == 429:
        return RateLimited(message, **kwargs)
    if status >= 500 or error in BANK_FAILED:
        return ServerError(message, **kwargs)
    return InvalidRequest(message, **kwargs)
