"""TrueLayer's auth server: the auth link (with PKCE S256) and `POST /connect/token`.

Token requests are form-encoded (what TrueLayer's own libraries send). A refresh rotates the pair:
callers must persist the new refresh token (see `bank_pipeline.connections`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import secrets
from collections.abc import Iterable
from urllib.parse import quote, urlencode

import httpx
import tenacity

from bank_pipeline import clock
from bank_pipeline.retries import retrying
from bank_pipeline.truelayer.errors import (
    MalformedResponse,
    NetworkError,
    ServerError,
    error_for_status,
    excerpt,
)
from bank_pipeline.truelayer.models import TokenSet

__all__ = ["AuthClient", "TokenSet", "build_auth_link", "generate_pkce", "pkce_challenge"]

log = logging.getLogger(__name__)


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def generate_pkce() -> tuple[str, str]:
    """(code_verifier, code_challenge): an 86-char random verifier (RFC 7636: 43–128) and its S256 challenge."""
    verifier = secrets.token_urlsafe(64)
    return verifier, pkce_challenge(verifier)


def _scope_string(scopes: str | Iterable[str]) -> str:
    items = scopes.split() if isinstance(scopes, str) else [s for scope in scopes for s in scope.split()]
    return " ".join(dict.fromkeys(items))


def build_auth_link(
    auth_url: str,
    client_id: str,
    redirect_uri: str,
    scopes: str | Iterable[str],
    state: str,
    code_challenge: str,
    providers: str | Iterable[str] | None = None,
    response_mode: str | None = None,
) -> str:
    """The URL the user opens to consent: `{auth_url}/?response_type=code&…` (spaces encoded as %20)."""
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": _scope_string(scopes),
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
    }
    if providers:
        params["providers"] = providers if isinstance(providers, str) else " ".join(providers)
    if response_mode:
        params["response_mode"] = response_mode
    return f"{auth_url.rstrip('/')}/?{urlencode(params, quote_via=quote, safe='')}"


def auth_server_unreachable(auth_url: str, timeout: float = 5.0) -> str | None:
    """Why the auth server cannot be reached (one line), or None when it answers at all: checked
    before the link is shown, so `connect` does not wait minutes for a redirect that cannot come."""
    try:
        httpx.get(auth_url, timeout=timeout)
    except httpx.HTTPError as exc:
        reason = type(exc).__name__ if not str(exc) else str(exc).splitlines()[0]
        return f"the TrueLayer auth server at {auth_url} is unreachable ({reason}); check TRUELAYER_AUTH_URL, or start the simulator: bank-pipeline simulator"
    return None


def _tokenset(data: object, path: str, previous_refresh: str | None = None) -> TokenSet:
    if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
        raise MalformedResponse(
            f"TrueLayer POST {path} returned no access_token", error="malformed_response", path=path
        )
    try:
        expires_in = int(data.get("expires_in", 3600))
    except (TypeError, ValueError):
        expires_in = 3600
    refresh = data.get("refresh_token")
    return TokenSet(
        access_token=data["access_token"],
        refresh_token=refresh if isinstance(refresh, str) and refresh else previous_refresh,
        expires_at=clock.now() + dt.timedelta(seconds=expires_in),
        scope=data.get("scope") if isinstance(data.get("scope"), str) else None,
    )


def _grant_unused(exc: BaseException) -> bool:
    """A token call worth repeating: a 5xx (not 501) or a connection that never reached the server."""
    return (
        isinstance(exc, ServerError)
        and exc.status_code != 501
        and not getattr(exc, "grant_may_be_used", False)
    )


class AuthClient:
    """`POST {auth_url}/connect/token` for the authorization-code and refresh-token grants."""

    TOKEN_PATH = "/connect/token"

    def __init__(
        self,
        auth_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float = 30.0,
        max_attempts: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.auth_url = auth_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.calls_made = 0
        self._transport = transport

    def __repr__(self) -> str:
        return f"AuthClient(auth_url={self.auth_url!r}, client_id={self.client_id!r})"

    def _post(self, form: dict[str, str]) -> object:
        """POST the token form. Retries only failures where the server cannot have used the grant:
        5xx answers and connection errors before anything was sent (never read timeouts)."""
        body = {**form, "client_id": self.client_id, "client_secret": self._client_secret}
        loop = retrying(
            attempts=self.max_attempts,
            retry_if=_grant_unused,
            wait=tenacity.wait_exponential(multiplier=0.2, max=2.0),
            log=log,
            what=f"TrueLayer POST {self.TOKEN_PATH}",
            describe=lambda exc: getattr(exc, "error", None) or type(exc).__name__,
        )
        with httpx.Client(timeout=self.timeout, transport=self._transport) as http:
            for attempt in loop:
                with attempt:
                    return self._attempt(http, body, attempt.retry_state.attempt_number)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, http: httpx.Client, body: dict[str, str], attempt: int) -> object:
        path = self.TOKEN_PATH
        self.calls_made += 1
        try:
            response = http.post(self.auth_url + path, data=body, headers={"Accept": "application/json"})
        except httpx.ConnectError as exc:
            raise NetworkError.of(
                f"TrueLayer POST {path}: could not reach {httpx.URL(self.auth_url).host}", exc, path=path, attempt=attempt
            ) from None
        except httpx.TransportError as exc:
            error = NetworkError.of(
                f"TrueLayer POST {path} failed mid-request; the grant may have been used", exc, path=path, attempt=attempt
            )
            error.grant_may_be_used = True
            raise error from None
        if response.status_code == 200:
            try:
                return json.loads(response.text)
            except ValueError:
                raise MalformedResponse(
                    f"TrueLayer POST {path} returned a body that is not valid JSON "
                    f"(starts {excerpt(response.text, 80)!r})",
                    status_code=200,
                    error="malformed_response",
                    attempts=attempt,
                    path=path,
                ) from None
        raise error_for_status(
            response.status_code, response.text, method="POST", path=path, attempts=attempt, token_endpoint=True
        )

    def exchange_code(self, code: str, redirect_uri: str, code_verifier: str | None = None) -> TokenSet:
        """Trade an authorization code (single use) for tokens; a bad/reused code → AuthorizationRequired."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if code_verifier:
            form["code_verifier"] = code_verifier
        return _tokenset(self._post(form), self.TOKEN_PATH)

    def refresh(self, refresh_token: str) -> TokenSet:
        """A new pair from a refresh token. The returned refresh token replaces the old one (rotation)."""
        data = self._post({"grant_type": "refresh_token", "refresh_token": refresh_token})
        return _tokenset(data, self.TOKEN_PATH, previous_refresh=refresh_token)
