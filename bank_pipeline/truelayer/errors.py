"""Typed TrueLayer errors, built from TrueLayer's error envelope `{error, error_description, error_details}`.

Messages carry TrueLayer's error code, its description, the HTTP status and the request path — never a
token, an Authorization header, a client secret or an authorization code.
"""

from __future__ import annotations

import json
from typing import Any

from bank_pipeline.display import escaped
from bank_pipeline.errors import BankPipelineError

EXCERPT_CHARS = 200


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A short, single-line excerpt of a response body for error messages."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


class TrueLayerError(BankPipelineError):
    """A TrueLayer call failed. `.error` is TrueLayer's code (e.g. `provider_request_limit_exceeded`)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error: str | None = None,
        error_description: str | None = None,
        error_details: dict | None = None,
        attempts: int = 1,
        path: str | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.error = error
        self.error_description = error_description
        self.error_details = error_details or {}
        self.attempts = attempts
        self.path = path
        # Seconds the server asked us to wait before trying again (`Retry-After`), when it said.
        self.retry_after: float | None = None
        # Set when the call already made all its own attempts (a token refresh made for a data
        # call): the data call's retries must not repeat it, or the attempts multiply.
        self.final = False
        super().__init__(message)

    def __str__(self) -> str:
        parts = [self.message]
        if self.error or self.error_description:
            # The bank's words, escaped: a newline in them must not split the error line.
            code = escaped(self.error or "error", 80)
            parts.append(f"{code}: {escaped(self.error_description)}" if self.error_description else code)
        extra = []
        if self.status_code is not None:
            extra.append(f"HTTP {self.status_code}")
        if self.attempts > 1:
            extra.append(f"after {self.attempts} attempts")
        text = ": ".join(parts)
        return f"{text} ({', '.join(extra)})" if extra else text


class AuthorizationRequired(TrueLayerError):
    """The user must connect the bank again (401, 403 `access_denied`, 400 `invalid_grant`)."""


class RateLimited(TrueLayerError):
    """429 `provider_too_many_requests` (or another throttling 429): retried with backoff."""


class ProviderLimitExceeded(TrueLayerError):
    """429 `provider_request_limit_exceeded`: the bank's unattended calls for today are used up.

    Final for today — never retried.
    """


class ServerError(TrueLayerError):
    """5xx from TrueLayer or the bank (`provider_error`, `temporarily_unavailable`, …): retried."""


class NetworkError(ServerError):
    """A timeout or connection failure: retried like a 5xx."""

    @classmethod
    def of(cls, message: str, exc: BaseException, *, path: str, attempt: int, error: str = "connection_error"):
        """The error for `exc` (an httpx transport failure) on `path`, attempt number `attempt`."""
        return cls(message, error=error, error_description=type(exc).__name__, attempts=attempt, path=path)


class MalformedResponse(TrueLayerError):
    """The response was not the JSON envelope the contract promises (non-JSON, truncated, wrong shape)."""


class NotSupported(TrueLayerError):
    """501 `endpoint_not_supported`: this provider does not offer the endpoint. Final."""


class InvalidRequest(TrueLayerError):
    """Any other 4xx (404 `account_not_found`, 400 `invalid_date_range`, 403 `sca_exceeded`, …). Final."""


class InvalidDateRange(InvalidRequest, ValueError):
    """A date range whose start is after its end, refused before any call."""


def parse_error_body(text: str) -> tuple[str | None, str | None, dict]:
    """(error, error_description, error_details) from an error body, tolerating non-JSON."""
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        details = data.get("error_details")
        description = data.get("error_description")
        return (
            data["error"],
            description if isinstance(description, str) else None,
            details if isinstance(details, dict) else {},
        )
    return None, (excerpt(text) if text else None), {}


def error_for_status(
    status: int, body: str, *, method: str, path: str, attempts: int = 1, token_endpoint: bool = False
) -> TrueLayerError:
    """The typed error for a non-2xx response."""
    error, description, details = parse_error_body(body)
    kwargs: dict[str, Any] = dict(
        status_code=status,
        error=error,
        error_description=description,
        error_details=details,
        attempts=attempts,
        path=path,
    )
    message = f"TrueLayer {method} {path} failed"
    if token_endpoint and (status == 401 or error in ("invalid_client", "unauthorized_client")):
        return InvalidRequest(
            f"{message}: TrueLayer refused the client credentials "
            "(check TRUELAYER_CLIENT_ID and TRUELAYER_CLIENT_SECRET)",
            **kwargs,
        )
    if status == 401 or (status == 403 and error == "access_denied") or error == "invalid_grant":
        hint = "the bank connection needs authorising again: run `bank-pipeline connect`"
        return AuthorizationRequired(f"{message} ({hint})", **kwargs)
    if status == 429:
        if error == "provider_request_limit_exceeded":
            return ProviderLimitExceeded(
                f"{message}: the bank's daily limit of unattended calls is used up; try again tomorrow",
                **kwargs,
            )
        return RateLimited(message, **kwargs)
    if status == 501:
        return NotSupported(message, **kwargs)
    if status >= 500:
        return ServerError(message, **kwargs)
    return InvalidRequest(message, **kwargs)
