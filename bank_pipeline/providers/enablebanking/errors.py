"""Enable Banking's error envelope `{message, code, error, detail}` mapped to the project's
provider error types (`bank_pipeline.truelayer.errors`), so the pipeline handles both providers'
failures alike.

Messages carry Enable Banking's error code and message, the HTTP status and the request path (with
any session id replaced by `{session_id}`) — never the JWT, the private key or a session id.
"""

from __future__ import annotations

import json

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


class WindowNotServed(InvalidRequest):
    """`WRONG_TRANSACTIONS_PERIOD`: the bank does not serve transactions that far back."""


def parse_error_body(text: str) -> tuple[str | None, str | None]:
    """(error code, message) from an error body, tolerating non-JSON."""
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        message = data.get("message")
        return (
            error if isinstance(error, str) else None,
            excerpt(message) if isinstance(message, str) else None,
        )
    return None, (excerpt(text) if text else None)


def error_for_response(status: int, body: str, *, method: str, path: str, attempts: int = 1) -> TrueLayerError:
    """The typed error for a non-2xx Enable Banking response."""
    error, description = parse_error_body(body)
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
    if error == "WRONG_TRANSACTIONS_PERIOD":
        return WindowNotServed(f"{message}: the bank does not serve transactions for this period", **kwargs)
    if error == "ASPSP_RATE_LIMIT_EXCEEDED":
        return ProviderLimitExceeded(
            f"{message}: the bank's daily limit of unattended reads is used up; try again tomorrow", **kwargs
        )
    if status == 429:
        return RateLimited(message, **kwargs)
    if status >= 500 or error in BANK_FAILED:
        return ServerError(message, **kwargs)
    return InvalidRequest(message, **kwargs)
