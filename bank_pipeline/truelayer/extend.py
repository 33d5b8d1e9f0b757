"""TrueLayer's `POST /data/v1/connections/extend` (operation ExtendConnection): renew a connection's
consent without a new connection, after the user reconfirmed it in this application.

The answer is one of three (`ExtendResponse`): `no_action_needed` with a new token pair,
`reconfirmation_of_consent_needed` (TrueLayer's auth dialog) or `authentication_needed` (the
bank's login), both with a `user_input_link` the user opens; the redirect then carries a code
exchanged like `connect`'s. A connection that cannot be extended answers a problem (422).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx

from bank_pipeline.errors import BankPipelineError
from bank_pipeline.truelayer.auth import _tokenset
from bank_pipeline.truelayer.errors import excerpt
from bank_pipeline.truelayer.models import TokenSet

EXTEND_PATH = "/connections/extend"
LINK_OUTCOMES = ("reconfirmation_of_consent_needed", "authentication_needed")


class CannotExtend(BankPipelineError):
    """The bank (or TrueLayer) will not extend this connection: a new consent is needed."""


@dataclass(frozen=True)
class ExtendOutcome:
    """What the extend call answered: new tokens, or a link the user must open."""

    action_needed: str
    tokens: TokenSet | None = None
    user_input_link: str | None = None


def extend_connection(
    data_url: str,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    redirect_uri: str,
    *,
    state: str,
    code_challenge: str,
    response_mode: str | None = None,
    timeout: float = 30.0,
) -> ExtendOutcome:
    """Ask TrueLayer to extend the connection whose refresh token this is; the user has reconfirmed
    consent in the terminal (`user_has_reconfirmed_consent: true`). Not retried: an extension may
    rotate the token pair."""
    body = {
        "user_has_reconfirmed_consent": True,
        "client_id": client_id,
        "client_secret": client_secret,
        "user": {},
        "refresh_token": refresh_token,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": code_challenge,
    }
    if response_mode:
        body["response_mode"] = response_mode
    url = data_url.rstrip("/") + EXTEND_PATH
    try:
        response = httpx.post(url, json=body, timeout=timeout, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise BankPipelineError(
            f"TrueLayer POST {EXTEND_PATH}: could not reach {httpx.URL(url).host} ({type(exc).__name__})"
        ) from None
    try:
        answer = json.loads(response.text)
    except ValueError:
        answer = None
    if response.status_code != 200:
        problem = answer if isinstance(answer, dict) else {}
        what = excerpt(str(problem.get("detail") or problem.get("title") or response.text), 160)
        what = "".join(ch if ch.isprintable() else "?" for ch in what)  # text from outside, shown on a terminal
        message = f"TrueLayer POST {EXTEND_PATH} answered HTTP {response.status_code}: {what}"
        if response.status_code in (401, 422):  # the refresh token is spent or the bank cannot extend
            raise CannotExtend(message)
        raise BankPipelineError(message)
    action = answer.get("action_needed") if isinstance(answer, dict) else None
    if action == "no_action_needed":
        return ExtendOutcome(action, tokens=_tokenset(answer, EXTEND_PATH))
    if action in LINK_OUTCOMES and isinstance(answer.get("user_input_link"), str):
        link = answer["user_input_link"]
        if httpx.URL(link).scheme not in ("http", "https"):
            raise BankPipelineError(f"TrueLayer POST {EXTEND_PATH} sent a user_input_link that is not a web link")
        return ExtendOutcome(action, user_input_link=link)
    raise BankPipelineError(f"TrueLayer POST {EXTEND_PATH} answered an unknown action_needed {ascii(str(action)[:60])}")
