"""The simulator's HTTP application (Starlette): auth server, Data API v1, admin and webhooks.

Paths, envelopes, status codes and error bodies follow TrueLayer's OpenAPI documents in
`docs/truelayer/`. Admin endpoints live under `/_sim/` (see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import html
import json
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from bank_pipeline import clock
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.simulator import hostile, mandates, webhooks
from bank_pipeline.simulator.config import SimulatorConfig
from bank_pipeline.simulator.generator import (
    MAX_MULTI,
    AccountData,
    AccountSpec,
    Txn,
    listed_users,
    pence_str,
)
from bank_pipeline.simulator.state import Consent, SimulatorState, _iso, _parse_iso, valid_user

UTC = timezone.utc

JSON_TYPE = "application/json; charset=utf-8"
ME_SCOPES = {"info", "accounts", "balance", "transactions", "cards", "offline_access"}
SCA_DAYS = 90
DEFAULT_WINDOW_DAYS = 90

ERROR_DESCRIPTIONS = {
    "account_not_found": "account not found",
    "invalid_date_range": "Invalid date range provided.",
    "sca_exceeded": "SCA exemption has expired. This resource is protected and should be accessed shortly after "
    "PSU Authentication. In order to access this resource, please have the PSU re-authenticate.",
    "access_denied": "Access to a specific resource has been denied.",
    "provider_too_many_requests": "Provider rate limit exceeded.",
    "provider_request_limit_exceeded": "Maximum number of requests per user allowed by provider exceeded.",
    "provider_error": "The provider service returned an unexpected error.",
    "temporarily_unavailable": "The provider service is unavailable.",
    "provider_timeout": "The provider service timed out.",
    "endpoint_not_supported": "Feature not supported by the provider",
}
SERVER_ERROR_CODES = {500: "provider_error", 503: "temporarily_unavailable", 504: "provider_timeout"}


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")), status_code=status, media_type=JSON_TYPE, headers=headers
    )


def api_error(
    status: int,
    error: str,
    description: str | None = None,
    details: dict | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return _json(
        {
            "error": error,
            "error_description": description or ERROR_DESCRIPTIONS.get(error, error),
            "error_details": details or {},
        },
        status,
        headers,
    )


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _parse_day(value: str) -> date:
    value = value.strip()
    if len(value) > 10 and value[10] in "T ":
        datetime.fromisoformat(value.replace("Z", "+00:00"))  # must be a valid datetime
        value = value[:10]
    if len(value) != 10:
        raise ValueError(value)
    return date.fromisoformat(value)


async def _form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (no multipart: TrueLayer's endpoints take none)."""
    raw = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(raw, keep_blank_values=True))


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


# ====================================================================== auth server

LINK_FIELDS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "providers",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
    "nonce",
    "session_id",  # the auth dialog of a connection being extended (`/connections/extend`)
)


def _auth_error(status: int, error: str, reason: str) -> Response:
    return _json({"error": error, "error_description": reason, "error_details": {"reason": reason}}, status)


def _validate_link(st: SimulatorState, p: dict[str, str]) -> Response | None:
    if p.get("client_id") != st.config.client_id:
        return _auth_error(400, "unauthorized_client", f"unknown client_id {p.get('client_id')!r}")
    if p.get("response_type") != "code":
        return _auth_error(400, "invalid_request", "response_type must be 'code'")
    for name in ("redirect_uri", "scope", "state"):
        if not p.get(name):
            return _auth_error(400, "invalid_request", f"missing required parameter {name}")
    uri = urlsplit(p["redirect_uri"])
    if uri.scheme not in ("http", "https") or not uri.netloc:
        return _auth_error(400, "invalid_request", "redirect_uri must be an absolute http(s) URL")
    method = p.get("code_challenge_method")
    if p.get("code_challenge") or method:
        if method != "S256":
            return _auth_error(400, "invalid_request", "code_challenge_method must be S256")
        if not p.get("code_challenge"):
            return _auth_error(
                400, "invalid_request", "code_challenge is required with code_challenge_method"
            )
    if p.get("response_mode") not in (None, "", "form_post", "query"):
        return _auth_error(400, "invalid_request", "response_mode must be form_post")
    return None


async def auth_link(request: Request) -> Response:
    st: SimulatorState = request.app.state.sim
    params = {k: v for k, v in request.query_params.items() if k in LINK_FIELDS}
    error = _validate_link(st, params)
    if error is not None:
        return error
    hidden = "\n".join(
        f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in params.items()
    )
    if params.get("session_id"):
        return HTMLResponse(_extend_page(st, params, hidden))
    options = "\n".join(f'<option value="{u}">{u}</option>' for u in listed_users())
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Mock Bank - connect your accounts</title></head>
<body>
<h1>TrueLayer simulator</h1>
<p>Client <b>{html.escape(params["client_id"])}</b> asks to read: {html.escape(params["scope"])}</p>
<form method="post" action="/consent">
{hidden}
<label>Mock user <select name="user">{options}</select></label>
<p>Any <code>multi-N</code> (N = 1..{MAX_MULTI}) also works: <input name="user_other" placeholder="multi-25"></p>
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
</body></html>"""
    return HTMLResponse(page)


async def consent(request: Request) -> Response:
    st: SimulatorState = request.app.state.sim
    form = await _form(request)
    params = {k: v for k, v in form.items() if k in LINK_FIELDS}
    error = _validate_link(st, params)
    if error is not None:
        return error
    user = str(form.get("user_other") or form.get("user") or "")
    decision = str(form.get("decision") or "")
    if decision not in ("allow", "deny"):
        return _auth_error(400, "invalid_request", "decision must be allow or deny")
    if not valid_user(user):
        return _auth_error(
            400, "invalid_request", f"unknown mock user {user!r} (alice, bob or multi-1..multi-{MAX_MULTI})"
        )
    redirect_uri, state = params["redirect_uri"], params["state"]
    extending = None
    if params.get("session_id"):
        extending = st.take_extend_session(params["session_id"])
        if extending is None:
            return _auth_error(400, "invalid_request", "unknown or already used session_id")
        if extending[0].user != user:
            return _auth_error(400, "invalid_request", "this session extends another user's connection")
    if decision == "deny":
        answer = {"error": "access_denied", "state": state}
    elif extending is not None:
        st.reconfirm(extending[0])
        code = st.new_code(extending[0], redirect_uri, params.get("code_challenge") or None)
        answer = {"code": code, "scope": extending[0].scope, "state": state}
    else:
        granted = st.new_consent(user, params["client_id"], params["scope"])
        code = st.new_code(granted, redirect_uri, params.get("code_challenge") or None)
        answer = {"code": code, "scope": params["scope"], "state": state}
    if params.get("response_mode") == "form_post":
        inputs = "\n".join(
            f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in answer.items()
        )
        page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Redirecting</title></head>
<body onload="document.forms[0].submit()">
<form method="post" action="{html.escape(redirect_uri)}">
{inputs}
<noscript><button type="submit">Continue</button></noscript>
</form></body></html>"""
        return HTMLResponse(page)
    return RedirectResponse(_with_query(redirect_uri, answer), status_code=302)


async def token(request: Request) -> Response:
    st: SimulatorState = request.app.state.sim
    ctype = request.headers.get("content-type", "")
    try:
        if "json" in ctype:
            data = await request.json()
            if not isinstance(data, dict):
                raise ValueError("not an object")
            data = {k: ("" if v is None else str(v)) for k, v in data.items()}
        else:
            data = await _form(request)
    except ValueError:
        return _auth_error(400, "invalid_request", "the body must be form-encoded or a JSON object")
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("basic ") and "client_id" not in data:
        try:
            cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            data["client_id"], data["client_secret"] = cid, secret
        except ValueError:
            pass
    grant = data.get("grant_type", "")
    with st.lock:
        st.stats["token_requests"][grant or "missing"] += 1
    if data.get("client_id") != st.config.client_id or data.get("client_secret") != st.config.client_secret:
        return _json(
            {
                "error": "unauthorized_client",
                "error_description": "The client credentials you have entered are incorrect. "
                "Please check and try again.",
                "error_details": {},
            },
            401,
        )
    headers = {"Cache-Control": "no-store"}
    faults = st.faults
    if faults.token_error and grant in faults.token_error_grants:
        body = {"error": faults.token_error, "error_details": {}}
        if faults.token_error_description is not None:
            body["error_description"] = faults.token_error_description
        return _json(body, faults.token_error_status)
    if grant == "authorization_code":
        code = data.get("code", "")
        if not code or not data.get("redirect_uri"):
            return _auth_error(400, "invalid_request", "code and redirect_uri are required")
        with st.lock:
            record = st.codes.get(code)
            if record is None or record.used:
                return _auth_error(
                    400, "invalid_grant", "the authorization code is invalid or was already used"
                )
            record.used = True
        if clock.now().timestamp() - record.created > 300:
            return _auth_error(400, "invalid_grant", "the authorization code has expired")
        if record.client_id != data["client_id"] or record.redirect_uri != data["redirect_uri"]:
            return _auth_error(400, "invalid_grant", "redirect_uri does not match the authorization request")
        if record.code_challenge:
            verifier = data.get("code_verifier", "")
            if not verifier:
                return _auth_error(400, "invalid_grant", "code_verifier is required (PKCE)")
            if _s256(verifier) != record.code_challenge:
                return _auth_error(400, "invalid_grant", "code_verifier does not match the code_challenge")
        granted = st.consents[record.consent_id]
        if granted.expired(st.sim_now()):
            return _auth_error(400, "invalid_grant", "the consent has expired or was revoked")
        return _json(st.issue_tokens(granted), 200, headers)
    if grant == "refresh_token":
        refresh = data.get("refresh_token", "")
        if not refresh:
            return _auth_error(400, "invalid_request", "refresh_token is required")
        granted = st.consent_for_refresh_token(refresh)
        if granted is None or granted.client_id != data["client_id"]:
            return _auth_error(400, "invalid_grant", "the refresh token is invalid or was superseded")
        if granted.expired(st.sim_now()):
            return _auth_error(
                400, "invalid_grant", "the consent has expired or was revoked; the user must re-authenticate"
            )
        return _json(st.issue_tokens(granted), 200, headers)
    return _auth_error(400, "invalid_request", f"unsupported grant_type {grant!r}")


def _extend_page(st: SimulatorState, params: dict[str, str], hidden: str) -> str:
    """The auth dialog of an extension: the consent's user is fixed; they reconfirm (or, for
    `authentication_needed`, log in to the mock bank again)."""
    found = st.extend_sessions.get(params["session_id"])
    granted = st.consents.get(found[0]) if found else None
    if granted is None:
        return "<!doctype html><p>This link has expired or was already used.</p>"
    login = found[1] == "authentication_needed"
    heading = "Mock Bank - log in again to keep sharing" if login else "Reconfirm access to your accounts"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{heading}</title></head>
<body>
<h1>{heading}</h1>
<p>Client <b>{html.escape(params["client_id"])}</b> asks to keep reading {html.escape(granted.scope)} for {st.faults.consent_days} more days.</p>
<form method="post" action="/consent">
{hidden}
<input type="hidden" name="user" value="{html.escape(granted.user)}">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
</body></html>"""


# ====================================================================== connections/extend

EXTEND_FIELDS = ("user_has_reconfirmed_consent", "client_id", "client_secret", "user", "refresh_token", "redirect_uri")


def _problem(status: int, title: str, detail: str | None = None, errors: dict | None = None) -> Response:
    """An RFC 7807 problem, as TrueLayer's Connection API answers errors."""
    body: dict[str, Any] = {
        "type": "https://docs.truelayer.com/#connection-api-errors",
        "title": title,
        "status": status,
        "instance": "/connections/extend",
        "trace_id": hashlib.md5(f"{title}|{clock.now().timestamp()}".encode()).hexdigest(),
    }
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    return Response(json.dumps(body), status_code=status, media_type="application/problem+json")


async def extend_connection(request: Request) -> Response:
    """`POST /data/v1/connections/extend` (operation ExtendConnection): while the consent lives,
    answer the configured outcome; an expired or revoked consent cannot be extended (422)."""
    st: SimulatorState = request.app.state.sim
    with st.lock:
        st.stats["paths"]["/data/v1/connections/extend"] += 1
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return _problem(400, "One or more validation errors occurred.", errors={"Body": ["A JSON object is required."]})
    missing = {name: [f"The {name} field is required."] for name in EXTEND_FIELDS if body.get(name) in (None, "")}
    if missing:
        return _problem(400, "One or more validation errors occurred.", errors=missing)
    if body["user_has_reconfirmed_consent"] is not True:
        return _problem(400, "One or more validation errors occurred.", errors={
            "UserHasReconfirmedConsent": ["Setting it to false is currently not supported."]})
    if body["client_id"] != st.config.client_id or body["client_secret"] != st.config.client_secret:
        return _problem(401, "Unauthorized", "Client credentials missing or invalid.")
    granted = st.consent_for_refresh_token(str(body["refresh_token"]))
    if granted is None or granted.client_id != body["client_id"]:
        return _problem(401, "Unauthorized", "Refresh token missing or invalid.")
    outcome = st.faults.extend_outcome
    if granted.expired(st.sim_now()) or outcome == "cannot_extend":
        return _problem(422, "No way to extend this connection", "This connection cannot be extended")
    if outcome == "no_action_needed":
        st.reconfirm(granted)
        tokens = st.issue_tokens(granted)
        return _json({"action_needed": outcome, **{k: tokens[k] for k in tokens if k != "scope"}})
    session_id = st.new_extend_session(granted, outcome)
    params = {
        "response_type": "code",
        "client_id": granted.client_id,
        "redirect_uri": str(body["redirect_uri"]),
        "scope": granted.scope,
        "state": str(body.get("state") or session_id),
        "session_id": session_id,
    }
    if body.get("code_challenge"):
        params.update(code_challenge=str(body["code_challenge"]), code_challenge_method="S256")
    if body.get("response_mode") == "form_post":
        params["response_mode"] = "form_post"
    base = st.base_url or str(request.base_url).rstrip("/")
    return _json({"action_needed": outcome, "user_input_link": f"{base}/?{urlencode(params)}"})


# ====================================================================== Data API

Handler = Callable[[Request, SimulatorState, Consent, AccountSpec | None, str], Awaitable[Response]]


def data_route(template: str, handler: Handler, kind: str | None = None) -> Route:
    async def endpoint(request: Request) -> Response:
        st: SimulatorState = request.app.state.sim
        response = await _data_call(request, st, template, handler, kind)
        with st.lock:
            st.stats["statuses"][response.status_code] += 1
        response.headers.setdefault("X-TL-Correlation-Id", hashlib.md5(str(id(request)).encode()).hexdigest())
        return response

    return Route(template, endpoint, methods=["GET"])


async def _data_call(
    request: Request, st: SimulatorState, template: str, handler: Handler, kind: str | None
) -> Response:
    faults = st.faults
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    account_id = request.path_params.get("account_id")
    with st.lock:
        st.stats["data_api_calls"] += 1
        st.stats["paths"]["/data/v1" + template] += 1
        if account_id is not None:
            st.stats["accounts"][account_id] += 1
    nonce = st.next_nonce()
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("bearer ") or not auth[7:].strip():
        return api_error(401, "unauthorized", "Missing bearer token in the Authorization header.")
    granted = st.consent_for_access_token(auth[7:].strip())
    if granted is None:
        return api_error(401, "invalid_token", "The access token is invalid or has been superseded.")
    expires = _parse_iso(granted.access_expires_at or "1970-01-01T00:00:00Z")
    if clock.now() >= expires:
        return api_error(401, "invalid_token", f"The token expired at '{expires:%Y-%m-%d %H:%M:%S}Z'")
    now = st.sim_now()
    if granted.expired(now):
        return api_error(
            403, "access_denied", "The consent has expired or was revoked; the user must re-authenticate."
        )
    spec = None
    if account_id is not None:
        spec = st.accounts_for(granted.user, granted.generation).get(account_id)
        if spec is None or spec.kind != kind:
            return api_error(404, "account_not_found")
        day = now.date().isoformat()
        limit = st.faults.unattended_limit
        with st.lock:
            if request.headers.get("x-psu-ip"):
                st.stats["attended"][account_id] += 1
            else:
                used = st.stats["unattended"][account_id][day]
                st.stats["unattended"][account_id][day] = used + 1
                if limit is not None and used >= limit:
                    return api_error(429, "provider_request_limit_exceeded")
    fault = st.draw_fault()
    if fault is not None:
        what, value = fault
        if what == "rate_limit":
            headers = {"Retry-After": str(value)} if value is not None else None
            return api_error(429, "provider_too_many_requests", headers=headers)
        return api_error(value, SERVER_ERROR_CODES[value])
    response = await handler(request, st, granted, spec, nonce)
    response.headers["X-Credentials-Id"] = granted.credentials_id
    return response


def _results(results: list[dict], status: str | None = "Succeeded") -> Response:
    body: dict[str, Any] = {"results": results}
    if status:
        body["status"] = status
    return _json(body)


def render_account(st: SimulatorState, account_id: str, spec: AccountSpec, user_spec, now: datetime) -> dict:
    if st.faults.account_display_name is not None:  # what the bank calls it, hostile or not
        spec = dataclasses.replace(spec, display_name=f"{spec.key} {st.faults.account_display_name}")
    if spec.kind == "card":
        today = st.today
        return {
            "account_id": account_id,
            "card_network": spec.card_network,
            "card_type": spec.card_type,
            "currency": spec.currency,
            "display_name": spec.display_name,
            "partial_card_number": spec.partial_card_number,
            "name_on_card": spec.name_on_card,
            "valid_from": f"{today.year - 2}-{today.month:02d}",
            "valid_to": f"{today.year + 2}-{today.month:02d}",
            "update_timestamp": _iso(now),
            "provider": {"provider_id": user_spec.provider_id},
        }
    return {
        "update_timestamp": _iso(now),
        "account_id": account_id,
        "account_type": spec.account_type,
        "display_name": spec.display_name,
        "currency": spec.currency,
        "account_number": {
            "iban": spec.iban,
            "number": spec.number,
            "sort_code": spec.sort_code,
            "swift_bic": spec.swift_bic,
        },
        "provider": {
            "provider_id": user_spec.provider_id,
            "display_name": user_spec.provider_name,
            "logo_uri": f"https://truelayer-provider-assets.s3.amazonaws.com/global/logos/"
            f"{user_spec.provider_id}.svg",
        },
    }


async def me(request, st, granted, spec, nonce):
    user_spec = st.user_data(granted.user).spec
    return _results(
        [
            {
                "client_id": granted.client_id,
                "credentials_id": granted.credentials_id,
                "consent_status": "Authorised",
                "consent_status_updated_at": granted.reconfirmed_at or granted.created_at,
                "consent_created_at": granted.created_at,
                "consent_expires_at": granted.expires_at,
                "provider": {
                    "display_name": user_spec.provider_name,
                    "provider_id": user_spec.provider_id,
                    "logo_uri": f"https://truelayer-provider-assets.s3.amazonaws.com/global/logos/"
                    f"{user_spec.provider_id}.svg",
                },
                "scopes": [s for s in granted.scope.split() if s in ME_SCOPES],
                "privacy_policy": "Feb2019",
            }
        ]
    )


async def info(request, st, granted, spec, nonce):
    user_spec = st.user_data(granted.user).spec
    item = {"full_name": user_spec.full_name, "update_timestamp": _iso(st.sim_now())}
    if granted.user == "alice":
        item["emails"] = [user_spec.email]
    return _results([item])


def _list(kind: str):
    async def handler(request, st, granted, spec, nonce):
        status = st.faults.accounts_error_status
        if status is not None:
            return api_error(status, SERVER_ERROR_CODES.get(status, "invalid_request"))
        user_spec = st.user_data(granted.user).spec
        now = st.sim_now()
        accounts = st.accounts_for(granted.user, granted.generation)
        return _results(
            [render_account(st, aid, a, user_spec, now) for aid, a in accounts.items() if a.kind == kind]
        )

    return handler


async def one_account(request, st, granted, spec, nonce):
    user_spec = st.user_data(granted.user).spec
    return _results([render_account(st, request.path_params["account_id"], spec, user_spec, st.sim_now())])


async def balance(request, st, granted, spec, nonce):
    data: AccountData = st.user_data(granted.user).accounts[spec.key]
    today = st.today.toordinal()
    now = _iso(st.sim_now())
    current = data.balance(today)
    if spec.kind == "account":
        pending = sum(t.pending_amount for t in data.pending(today))
        item: dict[str, Any] = {
            "currency": spec.currency,
            "available": (current + pending + spec.overdraft) / 100,
            "current": current / 100,
            "update_timestamp": now,
        }
        if spec.account_type == "TRANSACTION":
            item["overdraft"] = spec.overdraft / 100
        return _results([item])
    owed = -current
    statement_day = st.today.replace(day=1) - timedelta(days=1)
    statement = max(
        0,
        -sum(
            t.amount
            for t in data.booked(statement_day.replace(day=1).toordinal(), statement_day.toordinal(), today)
        ),
    )
    due = (statement_day + timedelta(days=1)).replace(day=12)
    if due < st.today:
        due = (due.replace(day=28) + timedelta(days=4)).replace(day=12)
    return _results(
        [
            {
                "currency": spec.currency,
                "current": owed / 100,
                "credit_limit": spec.credit_limit / 100,
                "last_statement_balance": statement / 100,
                "last_statement_date": statement_day.isoformat(),
                "payment_due": round(max(statement * 0.03, min(statement, 2500))) / 100,
                "payment_due_date": due.isoformat(),
                "update_timestamp": now,
            }
        ]
    )


def render_txn(t: Txn, spec: AccountSpec, nonce: str, pending: bool) -> dict:
    static = t.pending_static if pending else t.static
    if static is None:
        static = {}
        if pending:
            if t.pending_pti:
                static["provider_transaction_id"] = t.pending_pti
            static["timestamp"] = t.pending_timestamp
            amount = t.pending_amount
        else:
            if t.npti:
                static["normalised_provider_transaction_id"] = t.npti
            if t.pti:
                static["provider_transaction_id"] = t.pti
            static["timestamp"] = t.timestamp
            amount = t.sent_amount
        static.update(
            {
                "description": t.description,
                "amount": amount / 100,
                "currency": spec.currency,
                "transaction_type": t.transaction_type,
                "transaction_category": t.tl_category,
                "transaction_classification": list(t.classification),
            }
        )
        if t.merchant_name:
            static["merchant_name"] = t.merchant_name
        if not pending and spec.kind == "account" and t.running_balance is not None:
            static["running_balance"] = {"amount": t.running_balance / 100, "currency": spec.currency}
        if t.meta:
            static["meta"] = dict(t.meta)
        if pending:
            t.pending_static = static
        else:
            t.static = static
    tid = hashlib.md5(f"{nonce}|{t.uid}|{pending}".encode()).hexdigest()
    return {"transaction_id": tid, **static}


def _corrupt(results: list[dict], kind: str, n: int) -> tuple[list[dict], str | None]:
    """Apply a malformed-row fault; returns (results, kind actually applied)."""
    if kind == "truncated":
        return results, "truncated"
    if not results:  # no row to corrupt: a row-level fault leaves an empty answer as it is
        return results, None
    i = len(results) // 2
    row = dict(results[i])
    if kind == "missing_field":
        row.pop(("amount", "timestamp", "description", "transaction_type")[n % 4], None)
    elif kind == "bad_timestamp":
        ts = row.get("timestamp", "2026-01-01")
        row["timestamp"] = f"{ts[8:10]}/{ts[5:7]}/{ts[0:4]} 10:00"
    elif kind == "string_amount":
        row["amount"] = f"{row['amount']:.2f}".replace(".", ",")
    results = list(results)
    results[i] = row
    return results, None


def _transactions(pending: bool):
    async def handler(request, st, granted, spec, nonce):
        q = request.query_params
        today = st.today
        try:
            day_to = _parse_day(q["to"]) if q.get("to") else today
            day_from = (
                _parse_day(q["from"]) if q.get("from") else day_to - timedelta(days=DEFAULT_WINDOW_DAYS - 1)
            )
        except ValueError:
            return api_error(
                400, "invalid_date_range", details={"reason": "from/to must be dates (YYYY-MM-DD)"}
            )
        if day_from > day_to:
            return api_error(400, "invalid_date_range", details={"reason": "from is after to"})
        window = st.faults.sca_window_minutes
        if window is not None and day_from < today - timedelta(days=SCA_DAYS):
            created = _parse_iso(granted.created_at)
            if st.sim_now() - created > timedelta(minutes=window):
                return api_error(403, "sca_exceeded")
        data: AccountData = st.user_data(granted.user).accounts[spec.key]
        t_today = today.toordinal()
        if pending:
            rows = data.pending(t_today)
            if q.get("from") or q.get("to"):
                rows = [t for t in rows if day_from.toordinal() <= t.txn_day <= day_to.toordinal()]
        else:
            rows = data.booked(day_from.toordinal(), day_to.toordinal(), t_today)
        faults, seed = st.faults, st.config.seed
        results = [
            hostile.disguise(render_txn(t, spec, nonce, pending), t, faults, seed, t_today, pending) for t in rows
        ]
        bad = st.draw_malformed()
        if bad is None:
            return _results(results)
        results, applied = _corrupt(results, bad, st.malformed)
        body = json.dumps({"results": results, "status": "Succeeded"}, separators=(",", ":"))
        if applied == "truncated":
            body = body[: max(1, len(body) // 2)]
        return Response(body, media_type=JSON_TYPE)

    return handler


async def standing_orders(request, st, granted, spec, nonce):
    data = st.user_data(granted.user)
    return _results(
        mandates.standing_orders(data, spec.key, st.today, _iso(st.sim_now()), request.path_params["account_id"])
    )


async def direct_debits(request, st, granted, spec, nonce):
    data = st.user_data(granted.user)
    return _results(
        mandates.direct_debits(
            st.config.seed, data, spec.key, st.today, _iso(st.sim_now()), request.path_params["account_id"]
        )
    )


async def not_supported(request: Request) -> Response:
    return api_error(501, "endpoint_not_supported")


# ====================================================================== admin


def _admin_error(message: str, status: int = 400) -> Response:
    return _json({"error": "invalid_request", "error_description": message, "error_details": {}}, status)


async def _json_body(request: Request) -> dict:
    raw = await request.body()
    if not raw:
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


async def ground_truth(request: Request) -> Response:
    st: SimulatorState = request.app.state.sim
    q = request.query_params
    user = q.get("user", "")
    if not valid_user(user):
        return _admin_error(f"unknown user {user!r}")
    data = st.user_data(user)
    today = st.today
    try:
        day_from = _parse_day(q["from"]) if q.get("from") else date.fromordinal(data.start_day)
        day_to = _parse_day(q["to"]) if q.get("to") else today
    except ValueError:
        return _admin_error("from/to must be YYYY-MM-DD")
    nonce = f"gt:{st.next_nonce()}"
    generation = st.latest_generation(user)
    accounts = {}
    faults, seed, t_today = st.faults, st.config.seed, today.toordinal()
    for account_id, spec in st.accounts_for(user, generation).items():
        acct = data.accounts[spec.key]
        booked = acct.booked(day_from.toordinal(), day_to.toordinal(), t_today)
        rows = [t for t in booked if hostile.bad_reason(seed, t, faults) is None]
        pending = acct.pending(t_today)
        stated = {t.uid: hostile.booked_now(seed, t, faults, t_today) for t in rows}

        def currency(t: Txn, home: str = spec.currency) -> str:
            return hostile.FOREIGN_CURRENCY if hostile.has_foreign_currency(seed, t, faults) else home

        def sent_text(t: Txn, text: str | None) -> str | None:
            return hostile.hostile_text(text) if text and hostile.has_control_chars(seed, t, faults) else text

        accounts[account_id] = {
            "key": spec.key,
            "kind": spec.kind,
            "display_name": spec.display_name,
            "account_type": spec.account_type if spec.kind == "account" else None,
            "sort_code": spec.sort_code,
            "number": spec.number,
            "iban": spec.iban,
            "partial_card_number": spec.partial_card_number,
            "card_sign": spec.card_sign if spec.kind == "card" else None,
            "currency": spec.currency,
            "count": len(rows),
            "sum": pence_str(sum(stated[t.uid][0] for t in rows)),
            "pending_count": len(pending),
            "transactions": [
                {
                    "internal_id": t.uid,
                    "normalised_provider_transaction_id": t.npti,
                    "provider_transaction_id": t.pti,
                    "transaction_id": hashlib.md5(f"{nonce}|{t.uid}|False".encode()).hexdigest(),
                    "amount": pence_str(stated[t.uid][0]),
                    "provider_amount": pence_str(t.sent_amount),
                    "currency": currency(t),
                    "timestamp": t.timestamp,
                    "booking_date": date.fromordinal(t.booking_day).isoformat(),
                    "available_on": date.fromordinal(t.available_day).isoformat(),
                    "description": sent_text(t, stated[t.uid][1]),
                    "merchant_name": sent_text(t, t.merchant_name),
                    "true_category": t.true_category,
                    "true_subcategory": t.true_subcategory,
                    # Both legs of a transfer between the user's own accounts share this id.
                    "transfer_pair": t.transfer_pair,
                    "planted": t.planted,  # e.g. "same_amount": unrelated, made to look pairable
                    "recurring": t.recurring,  # e.g. "dd:octopus", "so:rent", "card:netflix"
                    "transaction_type": t.transaction_type,
                    "transaction_category": t.tl_category,
                    "pending_provider_transaction_id": t.pending_pti,
                    "pending_amount": (
                        pence_str(t.pending_amount if spec.kind == "account" or spec.card_sign == "signed"
                                  else -t.pending_amount)
                        if t.pending_amount is not None else None
                    ),
                    "corrected_from": (
                        pence_str(hostile.wrong_pence(t.amount))
                        if hostile.is_corrected(seed, t, faults) and stated[t.uid][0] == t.amount
                        else None
                    ),
                }
                for t in rows
            ],
            # Rows the bank sends that a correct pipeline must quarantine (never in the ledger).
            "bad_rows": [
                {
                    "internal_id": t.uid,
                    "normalised_provider_transaction_id": t.npti,
                    "provider_transaction_id": t.pti,
                    "booking_date": date.fromordinal(t.booking_day).isoformat(),
                    "reason": hostile.bad_reason(seed, t, faults),
                }
                for t in booked
                if hostile.bad_reason(seed, t, faults) is not None
            ],
            # The bank's pending list today (amounts from the holder's view, text as sent).
            "pending": [
                {
                    "internal_id": t.uid,
                    "provider_transaction_id": t.pending_pti,
                    "booking_date": (t.pending_timestamp or "")[:10],
                    "amount": pence_str(
                        t.pending_amount if spec.kind == "account" or spec.card_sign == "signed" else -t.pending_amount
                    ),
                    "description": sent_text(t, t.description),
                }
                for t in pending
            ],
        }
    return _json(
        {
            "user": user,
            "today": today.isoformat(),
            "from": day_from.isoformat(),
            "to": day_to.isoformat(),
            "generation": generation,
            "accounts": accounts,
        }
    )


async def faults_endpoint(request: Request) -> Response:
    st: SimulatorState = request.app.state.sim
    if request.method == "POST":
        try:
            st.set_faults(await _json_body(request))
        except (ValueError, TypeError, BankPipelineError) as exc:
            return _admin_error(str(exc))
    return _json({"faults": st.faults.as_dict()})


async def stats(request: Request) -> Response:
    return _json(request.app.state.sim.stats_snapshot())


async def stats_reset(request: Request) -> Response:
    st: SimulatorState = request.app.state.sim
    st.reset_stats()
    return _json(st.stats_snapshot())


async def clock_endpoint(request: Request) -> Response:
    st: SimulatorState = request.app.state.sim
    if request.method == "POST":
        try:
            body = await _json_body(request)
            if "today" in body:
                st.set_today(date.fromisoformat(str(body["today"])))
            elif "advance_days" in body:
                st.set_today(st.today + timedelta(days=int(body["advance_days"])))
            else:
                raise ValueError('send {"today": "YYYY-MM-DD"} or {"advance_days": N}')
        except (ValueError, TypeError) as exc:
            return _admin_error(str(exc))
    return _json({"today": st.today.isoformat(), "now": _iso(st.sim_now())})


async def consent_expire(request: Request) -> Response:
    st: SimulatorState = request.app.state.sim
    try:
        body = await _json_body(request)
    except ValueError as exc:
        return _admin_error(str(exc))
    user = str(body.get("user", ""))
    if not valid_user(user):
        return _admin_error(f"unknown user {user!r}")
    return _json({"user": user, "expired": st.expire_consents(user)})


async def jwks(request: Request) -> Response:
    return _json(webhooks.jwks(request.app.state.signing_key))


async def users(request: Request) -> Response:
    st: SimulatorState = request.app.state.sim
    out = {}
    for user in listed_users():
        generation = st.latest_generation(user)
        out[user] = {
            aid: {"key": a.key, "kind": a.kind, "display_name": a.display_name}
            for aid, a in st.accounts_for(user, generation).items()
        }
    return _json({"users": out, "note": f"any multi-N with N in 1..{MAX_MULTI} is also a user"})


async def webhook_send(request: Request) -> Response:
    st: SimulatorState = request.app.state.sim
    try:
        body = await _json_body(request)
    except ValueError as exc:
        return _admin_error(str(exc))
    url = str(body.get("url") or "")
    user = str(body.get("user") or "alice")
    tamper = body.get("tamper")
    if not url.startswith(("http://", "https://")):
        return _admin_error("url must be an http(s) URL")
    if not valid_user(user):
        return _admin_error(f"unknown user {user!r}")
    if tamper not in (None, *webhooks.TAMPER_MODES):
        return _admin_error(f"tamper must be one of {list(webhooks.TAMPER_MODES)}")
    with st.lock:
        st.webhook_counter += 1
        counter = st.webhook_counter
        consents = [c for c in st.consents.values() if c.user == user and not c.revoked]
    credentials_id = (
        consents[-1].credentials_id
        if consents
        else base64.b64encode(
            hashlib.sha256(f"{st.config.seed}|{user}|credentials".encode()).digest()
        ).decode()
    )
    account_id = body.get("account_id")
    if account_id is None:
        account_id = next(iter(st.accounts_for(user, st.latest_generation(user))))
    timestamp = str(body.get("timestamp") or webhooks.rfc3339_now())
    today = st.today.isoformat()
    payload = {
        "event_id": str(body.get("event_id") or webhooks.event_uuid(st.config.seed, counter)),
        "event_type": str(body.get("type") or "transactions_available"),
        "event_version": 1,
        "credentials_id": credentials_id,
        "account_id": str(account_id),
        "from": str(body.get("from") or today),
        "to": str(body.get("to") or today),
        "timestamp": timestamp,
    }
    base = st.base_url or str(request.base_url).rstrip("/")
    headers, content = webhooks.build_signed_request(
        request.app.state.signing_key,
        request.app.state.wrong_key,
        url,
        payload,
        f"{base}/_sim/jwks",
        timestamp,
        tamper,
    )
    with st.lock:
        st.stats["webhooks_sent"] += 1
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(url, content=content.encode(), headers=headers)
    except httpx.HTTPError as exc:
        return _json(
            {
                "error": "delivery_failed",
                "error_description": f"{type(exc).__name__}: {exc}",
                "event_id": payload["event_id"],
                "headers": headers,
                "payload": content,
            },
            502,
        )
    return _json(
        {
            "status_code": answer.status_code,
            "body": answer.text,
            "event_id": payload["event_id"],
            "headers": headers,
            "payload": content,
        }
    )


# ====================================================================== assembly

DATA_ROUTES: list[tuple[str, Handler, str | None]] = [
    ("/me", me, None),
    ("/info", info, None),
    ("/accounts", _list("account"), None),
    ("/accounts/{account_id}", one_account, "account"),
    ("/accounts/{account_id}/balance", balance, "account"),
    ("/accounts/{account_id}/transactions", _transactions(False), "account"),
    ("/accounts/{account_id}/transactions/pending", _transactions(True), "account"),
    ("/accounts/{account_id}/standing_orders", standing_orders, "account"),
    ("/accounts/{account_id}/direct_debits", direct_debits, "account"),
    ("/cards", _list("card"), None),
    ("/cards/{account_id}", one_account, "card"),
    ("/cards/{account_id}/balance", balance, "card"),
    ("/cards/{account_id}/transactions", _transactions(False), "card"),
    ("/cards/{account_id}/transactions/pending", _transactions(True), "card"),
]


def create_app(config: SimulatorConfig | None = None, state: SimulatorState | None = None) -> Starlette:
    """The simulator as an ASGI app; `app.state.sim` is its `SimulatorState`."""
    config = config or SimulatorConfig()
    state = state or SimulatorState(config)
    routes = [
        Route("/", auth_link, methods=["GET"]),
        Route("/consent", consent, methods=["POST"]),
        Route("/connect/token", token, methods=["POST"]),
        Route("/_sim/ground_truth", ground_truth, methods=["GET"]),
        Route("/_sim/faults", faults_endpoint, methods=["GET", "POST"]),
        Route("/_sim/stats", stats, methods=["GET"]),
        Route("/_sim/stats/reset", stats_reset, methods=["POST"]),
        Route("/_sim/clock", clock_endpoint, methods=["GET", "POST"]),
        Route("/_sim/consent/expire", consent_expire, methods=["POST"]),
        Route("/_sim/jwks", jwks, methods=["GET"]),
        Route("/_sim/users", users, methods=["GET"]),
        Route("/_sim/webhooks/send", webhook_send, methods=["POST"]),
    ]
    # Route paths are the Data API templates under /data/v1 (kept whole for the stats keys).
    for template, handler, kind in DATA_ROUTES:
        route = data_route(template, handler, kind)
        routes.append(Route("/data/v1" + template, route.endpoint, methods=["GET"]))
    routes.append(Route("/data/v1/connections/extend", extend_connection, methods=["POST"]))
    routes.append(Route("/data/v1/batch/transactions", not_supported, methods=["POST"]))
    routes.append(Route("/data/v1/batch/results", not_supported, methods=["GET"]))
    app = Starlette(routes=routes)
    app.state.sim = state
    app.state.signing_key = webhooks.SigningKey.derive(config.seed)
    app.state.wrong_key = webhooks.SigningKey.derive(config.seed, "not-in-the-jwks")
    return app
