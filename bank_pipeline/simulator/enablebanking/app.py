"""The Enable Banking simulator's HTTP application (Starlette).

Paths, bodies and error envelopes follow Enable Banking's published API (`/aspsps`, `/auth`,
`/sessions`, `/accounts/{uid}/balances|transactions`, errors as `{code, message, error, detail}`).
The quirks the pipeline must survive are configured in `EnableBankingSimConfig`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bank_pipeline import clock
from bank_pipeline.serving import bind_socket, serve_in_thread, url_of
from bank_pipeline.simulator.enablebanking.config import SIM_BANK, EnableBankingSimConfig
from bank_pipeline.simulator.enablebanking.state import EnableBankingState, Listing, Session
from bank_pipeline.simulator.generator import AccountSpec, Txn, is_valid_user, pence_str

ISSUER = "enablebanking.com"
AUDIENCE = "api.enablebanking.com"
MAX_JWT_SECONDS = 24 * 3600
DEFAULT_DAYS = 90
PSU_HEADERS = ("Psu-Ip-Address", "Psu-User-Agent")
CASH_ACCOUNT_TYPES = {"TRANSACTION": "CACC", "SAVINGS": "SVGS"}


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status_code=status, media_type="application/json")


def api_error(status: int, error: str, message: str, detail: Any = None) -> Response:
    return _json({"code": status, "message": message, "error": error, "detail": detail}, status)


def _state(request: Request) -> EnableBankingState:
    return request.app.state.eb


def check_jwt(request: Request) -> Response | None:
    """None when the call carries a JWT the application's public key verifies, kid = application
    id, the right issuer and audience, and a lifetime of at most a day that covers now."""
    st = _state(request)
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer "):
        return api_error(401, "AUTHORIZATION_NOT_PROVIDED", "Authorization header with a Bearer JWT is required")
    token = header[len("Bearer "):]
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        claims = jwt.decode(
            token,
            request.app.state.public_key,
            algorithms=["RS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            # Expiry is checked below on the pipeline's clock (which tests pin), not the wall clock.
            options={"require": ["exp", "iat", "iss", "aud"], "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError as exc:
        return api_error(401, "UNAUTHORIZED_ACCESS", f"JWT is not valid: {type(exc).__name__}")
    if kid != st.config.application_id:
        return api_error(401, "UNAUTHORIZED_ACCESS", "JWT kid is not a known application")
    now = clock.now().timestamp()
    iat, exp = claims["iat"], claims["exp"]
    if not isinstance(iat, int) or not isinstance(exp, int) or exp - iat > MAX_JWT_SECONDS:
        return api_error(401, "UNAUTHORIZED_ACCESS", "JWT lifetime must be at most 24 hours")
    if not iat - 60 <= now < exp:
        return api_error(401, "UNAUTHORIZED_ACCESS", "JWT is expired or not yet valid")
    return None


def _psu_present(request: Request) -> bool | Response:
    present = [h for h in PSU_HEADERS if request.headers.get(h)]
    if present and len(present) != len(PSU_HEADERS):
        return api_error(400, "PSU_HEADER_NOT_PROVIDED", "Either all required PSU headers or none are to be provided")
    return bool(present)


def _bank(config: EnableBankingSimConfig) -> dict:
    name, country = SIM_BANK
    return {
        "name": name,
        "country": country,
        "logo": "https://example.invalid/simulated-bank.png",
        "psu_types": ["personal"],
        "auth_methods": [{"name": "redirect", "psu_type": "personal", "approach": "REDIRECT", "hidden_method": False}],
        "maximum_consent_validity": config.max_consent_days * 86_400,
        "beta": False,
        "bic": "SIMBGB2L",
        "required_psu_headers": list(PSU_HEADERS),
    }


# ====================================================================== application and banks


async def application(request: Request) -> Response:
    if (refused := check_jwt(request)) is not None:
        return refused
    st = _state(request)
    return _json({
        "name": "bank_pipeline simulator", "kid": st.config.application_id, "environment": "SANDBOX",
        "redirect_urls": [], "active": True, "countries": [SIM_BANK[1]], "services": ["AIS"],
    })


async def aspsps(request: Request) -> Response:
    if (refused := check_jwt(request)) is not None:
        return refused
    country = request.query_params.get("country")
    banks = [_bank(_state(request).config)]
    return _json({"aspsps": [b for b in banks if country is None or b["country"] == country.upper()]})


# ====================================================================== consent


def _account_resource(st: EnableBankingState, session: Session, uid: str, spec: AccountSpec) -> dict:
    identity = st.identification_hash(session.user, spec.key)
    if spec.iban:
        account_id: dict = {"iban": spec.iban}
    else:
        account_id = {"other": {"identification": spec.partial_card_number or spec.key, "scheme_name": "CPAN"}}
    return {
        "uid": uid,
        "identification_hash": identity,
        "identification_hashes": [identity],
        "account_id": account_id,
        "name": spec.display_name,
        "details": spec.display_name,
        "currency": spec.currency,
        "cash_account_type": "CARD" if spec.kind == "card" else CASH_ACCOUNT_TYPES.get(spec.account_type, "OTHR"),
    }


async def start_auth(request: Request) -> Response:
    if (refused := check_jwt(request)) is not None:
        return refused
    st = _state(request)
    try:
        body = json.loads(await request.body())
        aspsp = body["aspsp"]
        valid_until = datetime.fromisoformat(str(body["access"]["valid_until"]).replace("Z", "+00:00"))
        redirect_url, state = str(body["redirect_url"]), str(body["state"])
    except (ValueError, KeyError, TypeError):
        return api_error(422, "WRONG_REQUEST_PARAMETERS", "access.valid_until, aspsp, state and redirect_url are required")
    if valid_until.tzinfo is None:
        return api_error(422, "WRONG_REQUEST_PARAMETERS", "access.valid_until must carry a timezone offset")
    if not isinstance(aspsp, dict) or (aspsp.get("name"), aspsp.get("country")) != SIM_BANK:
        return api_error(404, "WRONG_ASPSP_PROVIDED", "Unknown ASPSP")
    now = st.now()
    if valid_until <= now or valid_until > now + timedelta(days=st.config.max_consent_days):
        return api_error(422, "WRONG_REQUEST_PARAMETERS", "access.valid_until exceeds the ASPSP's maximum consent validity")
    auth = st.start({"name": aspsp["name"], "country": aspsp["country"]}, redirect_url, state, valid_until)
    return _json({
        "url": f"{st.base_url}/_sim/authorize/{auth.authorization_id}",
        "authorization_id": auth.authorization_id,
        "psu_id_hash": auth.authorization_id[::-1],
    })


async def authorize_page(request: Request) -> Response:
    """The bank's consent screen, reduced to choosing a simulated user: `?user=alice`."""
    st = _state(request)
    user = request.query_params.get("user", "")
    if not is_valid_user(user):
        return Response("unknown user", status_code=400, media_type="text/plain")
    auth = st.grant(request.path_params["authorization_id"], user)
    if auth is None:
        return Response("unknown or already used authorisation", status_code=404, media_type="text/plain")
    sep = "&" if "?" in auth.redirect_url else "?"
    return RedirectResponse(f"{auth.redirect_url}{sep}{urlencode({'code': auth.code, 'state': auth.state})}", 302)


def _session_body(st: EnableBankingState, session: Session) -> dict:
    return {
        "session_id": session.session_id,
        "accounts": [_account_resource(st, session, uid, spec) for uid, spec in session.accounts.items()],
        "aspsp": session.aspsp,
        "psu_type": "personal",
        "access": {"valid_until": session.valid_until.isoformat()},
    }


async def create_session(request: Request) -> Response:
    if (refused := check_jwt(request)) is not None:
        return refused
    st = _state(request)
    try:
        code = str(json.loads(await request.body())["code"])
    except (ValueError, KeyError, TypeError):
        return api_error(422, "WRONG_REQUEST_PARAMETERS", "code is required")
    session = st.redeem(code)
    if session is None:
        return api_error(400, "WRONG_AUTHORIZATION_CODE", "Wrong or already used authorization code")
    return _json(_session_body(st, session))


def _session_status(st: EnableBankingState, session: Session) -> str:
    if session.closed:
        return "CLOSED"
    return "EXPIRED" if st.now() >= session.valid_until else "AUTHORIZED"


async def session_endpoint(request: Request) -> Response:
    if (refused := check_jwt(request)) is not None:
        return refused
    st = _state(request)
    session = st.sessions.get(request.path_params["session_id"])
    if session is None:
        return api_error(404, "SESSION_DOES_NOT_EXIST", "Session does not exist")
    if request.method == "DELETE":
        session.closed = True
        return _json({"message": "OK"})
    body = _session_body(st, session)
    return _json({
        "status": _session_status(st, session),
        "accounts": list(session.accounts),
        "accounts_data": [
            {"uid": a["uid"], "identification_hash": a["identification_hash"], "identification_hashes": a["identification_hashes"]}
            for a in body["accounts"]
        ],
        "aspsp": session.aspsp,
        "psu_type": "personal",
        "psu_id_hash": st.identification_hash(session.user, "psu"),
        "access": body["access"],
        "created": session.created.isoformat(),
    })


# ====================================================================== account reads


def _booked_json(st: EnableBankingState, user: str, spec: AccountSpec, t: Txn) -> dict:
    row: dict[str, Any] = {
        "entry_reference": st.booked_reference(user, spec.key, t),
        "transaction_id": st.entry_reference(user, spec.key, t.uid, f"id{st.requests}"),
        "transaction_amount": {"currency": spec.currency, "amount": pence_str(abs(t.amount))},
        "credit_debit_indicator": "DBIT" if t.amount < 0 else "CRDT",
        "status": "BOOK",
        "booking_date": date.fromordinal(t.booking_day).isoformat(),
        "value_date": date.fromordinal(t.booking_day).isoformat(),
        "transaction_date": date.fromordinal(t.txn_day).isoformat(),
        "remittance_information": [t.description],
    }
    if t.merchant_name:
        row["creditor" if t.amount < 0 else "debtor"] = {"name": t.merchant_name}
    if spec.kind == "account" and t.running_balance is not None:
        row["balance_after_transaction"] = {"currency": spec.currency, "amount": pence_str(t.running_balance)}
    return row


def pending_pence(spec: AccountSpec, t: Txn) -> int:
    """A pending row's amount from the holder's view (debits negative)."""
    sent = t.pending_amount if t.pending_amount is not None else t.sent_amount
    return sent if spec.kind == "account" or spec.card_sign == "signed" else -sent


def _pending_json(st: EnableBankingState, user: str, spec: AccountSpec, t: Txn) -> dict:
    amount = pending_pence(spec, t)
    return {
        "entry_reference": st.entry_reference(user, spec.key, t.uid, "PDNG"),
        "transaction_amount": {"currency": spec.currency, "amount": pence_str(abs(amount))},
        "credit_debit_indicator": "DBIT" if amount < 0 else "CRDT",
        "status": "PDNG",
        "transaction_date": (t.pending_timestamp or "")[:10] or date.fromordinal(t.txn_day).isoformat(),
        "remittance_information": [t.description],
    }


def _account(request: Request) -> tuple[EnableBankingState, Session, str, AccountSpec] | Response:
    if (refused := check_jwt(request)) is not None:
        return refused
    st = _state(request)
    uid = request.path_params["uid"]
    session = st.session_of(uid)
    if session is None:
        return api_error(404, "ACCOUNT_DOES_NOT_EXIST", "Account does not exist")
    status = _session_status(st, session)
    if status != "AUTHORIZED":
        return api_error(401, f"{status}_SESSION", f"Session is {status.lower()}")
    if st.bank_fails():
        return api_error(500, "ASPSP_ERROR", "Error interacting with ASPSP", "Unknown error")
    return st, session, uid, session.accounts[uid]


def _budget(st: EnableBankingState, request: Request, session: Session, spec: AccountSpec) -> Response | None:
    present = _psu_present(request)
    if isinstance(present, Response):
        return present
    if present or st.config.unattended_limit is None:
        return None
    if st.count_read(st.identification_hash(session.user, spec.key)) > st.config.unattended_limit:
        return api_error(429, "ASPSP_RATE_LIMIT_EXCEEDED", "ASPSP rate limit exceeded")
    return None


async def balances(request: Request) -> Response:
    found = _account(request)
    if isinstance(found, Response):
        return found
    st, session, _uid, spec = found
    if (refused := _budget(st, request, session, spec)) is not None:
        return refused
    acct = st.user_data(session.user).accounts[spec.key]
    pence = acct.balance(st.today.toordinal())
    return _json({"balances": [{
        "name": "Booked balance",
        "balance_amount": {"currency": spec.currency, "amount": pence_str(pence)},
        "balance_type": "CLBD",
        "reference_date": st.today.isoformat(),
    }]})


def _listing_rows(st: EnableBankingState, session: Session, spec: AccountSpec, query: tuple) -> list[dict]:
    day_from, day_to, status = query
    acct = st.user_data(session.user).accounts[spec.key]
    today = st.today.toordinal()
    rows: list[dict] = []
    if status in (None, "BOOK"):
        rows += [_booked_json(st, session.user, spec, t) for t in acct.booked(day_from.toordinal(), day_to.toordinal(), today)]
    if status in (None, "PDNG") and st.config.with_pending:
        rows += [_pending_json(st, session.user, spec, t) for t in acct.pending(today)]
    return rows


def _query(st: EnableBankingState, request: Request, session: Session) -> tuple | Response:
    """(date_from, date_to, status) of a transactions request, or the bank's refusal. The served
    history is checked when a listing starts; its continuation pages are part of what was accepted."""
    q = request.query_params
    try:
        day_from = date.fromisoformat(q["date_from"]) if q.get("date_from") else None
        day_to = date.fromisoformat(q["date_to"]) if q.get("date_to") else None
    except ValueError:
        return api_error(422, "WRONG_REQUEST_PARAMETERS", "date_from and date_to must be dates (YYYY-MM-DD)")
    if day_to is not None and day_from is None:
        return api_error(422, "DATE_TO_WITHOUT_DATE_FROM", "date_to requires date_from")
    status = q.get("transaction_status")
    if status not in (None, "BOOK", "PDNG"):
        return api_error(422, "WRONG_REQUEST_PARAMETERS", "transaction_status must be BOOK or PDNG here")
    today = st.today
    day_from = day_from or today - timedelta(days=DEFAULT_DAYS - 1)
    day_to = day_to or today
    if day_from > today:
        return api_error(422, "DATE_FROM_IN_FUTURE", "date_from is in the future")
    if day_from > day_to:
        return api_error(422, "WRONG_DATE_INTERVAL", "date_from is after date_to")
    served, config = st.config.served_days, st.config
    just_consented = (
        config.full_history_minutes is not None
        and st.now() < session.created + timedelta(minutes=config.full_history_minutes)
    )
    if served is not None and status != "PDNG" and not just_consented and not q.get("continuation_key"):
        first = today - timedelta(days=served - 1)
        if day_from < first:
            detail = {"date_from": first.isoformat()} if config.name_served_from else {"message": "Requested time period out of bound."}
            return api_error(422, "WRONG_TRANSACTIONS_PERIOD", "Wrong transactions period requested", detail)
    return (day_from, day_to, status)


async def transactions(request: Request) -> Response:
    found = _account(request)
    if isinstance(found, Response):
        return found
    st, session, uid, spec = found
    with st.lock:
        st.requests += 1
    query = _query(st, request, session)
    if isinstance(query, Response):
        return query
    key = request.query_params.get("continuation_key")
    if key:
        listing = st.listings.get(key)
        if listing is None or listing.session_id != session.session_id or listing.uid != uid or listing.query != query:
            return api_error(400, "WRONG_CONTINUATION_KEY", "Wrong continuation key")
        present = _psu_present(request)
        if isinstance(present, Response):
            return present
    else:
        if (refused := _budget(st, request, session, spec)) is not None:
            return refused
        listing = Listing(session.session_id, uid, query, offset=0, page=1)
    config = st.config
    if listing.empty:
        after = Listing(session.session_id, uid, query, listing.offset, listing.page + 1, rows=listing.rows)
        return _json({"transactions": [], "continuation_key": st.new_key(after)})
    rows = listing.rows if listing.rows is not None else _listing_rows(st, session, spec, query)
    size, offset = config.page_size, listing.offset
    page = rows[offset:offset + size]
    if config.repeat_entry_every and listing.page > 1 and listing.page % config.repeat_entry_every == 0 and offset > 0:
        page = [rows[offset - 1], *page]
    more = bool(rows) and offset + size <= len(rows)
    next_key = None
    if more:
        planted = bool(config.empty_page_every) and listing.page % config.empty_page_every == 0
        after = Listing(session.session_id, uid, query, offset + size, listing.page + 1, empty=planted, rows=rows)
        next_key = st.new_key(after)
    return _json({"transactions": page, "continuation_key": next_key})


# ====================================================================== admin


async def ground_truth(request: Request) -> Response:
    """Per identification hash: the booked rows in [from, to] and today's pending rows, with
    amounts from the holder's view (debits negative)."""
    st = _state(request)
    q = request.query_params
    user = q.get("user", "")
    if not is_valid_user(user):
        return api_error(400, "WRONG_REQUEST_PARAMETERS", "unknown user")
    try:
        day_from, day_to = date.fromisoformat(q["from"]), date.fromisoformat(q.get("to") or st.today.isoformat())
    except (KeyError, ValueError):
        return api_error(400, "WRONG_REQUEST_PARAMETERS", "from (and to) must be YYYY-MM-DD")
    data = st.user_data(user)
    today = st.today.toordinal()
    accounts = {}
    for spec in data.spec.accounts:
        acct = data.accounts[spec.key]
        accounts[st.identification_hash(user, spec.key)] = {
            "key": spec.key,
            "currency": spec.currency,
            "booked": [
                {
                    "entry_reference": st.booked_reference(user, spec.key, t),
                    "internal_id": t.uid,
                    "booking_date": date.fromordinal(t.booking_day).isoformat(),
                    "amount": pence_str(t.amount),
                    "description": t.description,
                }
                for t in acct.booked(day_from.toordinal(), day_to.toordinal(), today)
            ],
            "pending": [
                {
                    "entry_reference": st.entry_reference(user, spec.key, t.uid, "PDNG"),
                    "booked_entry_reference": st.booked_reference(user, spec.key, t),
                    "internal_id": t.uid,
                    "amount": pence_str(pending_pence(spec, t)),
                }
                for t in (acct.pending(today) if st.config.with_pending else [])
            ],
        }
    return _json({"user": user, "today": st.today.isoformat(), "accounts": accounts})


async def set_clock(request: Request) -> Response:
    st = _state(request)
    try:
        st.set_today(date.fromisoformat(json.loads(await request.body())["today"]))
    except (ValueError, KeyError, TypeError):
        return api_error(400, "WRONG_REQUEST_PARAMETERS", 'body must be {"today": "YYYY-MM-DD"}')
    return _json({"today": st.today.isoformat()})


async def stats(request: Request) -> Response:
    st = _state(request)
    return _json({"unattended_reads": [
        {"identification_hash": identity, "day": day.isoformat(), "reads": n} for (identity, day), n in st.reads.items()
    ]})


def create_app(config: EnableBankingSimConfig) -> Starlette:
    app = Starlette(routes=[
        Route("/application", application),
        Route("/aspsps", aspsps),
        Route("/auth", start_auth, methods=["POST"]),
        Route("/sessions", create_session, methods=["POST"]),
        Route("/sessions/{session_id}", session_endpoint, methods=["GET", "DELETE"]),
        Route("/accounts/{uid}/balances", balances),
        Route("/accounts/{uid}/transactions", transactions),
        Route("/_sim/authorize/{authorization_id}", authorize_page),
        Route("/_sim/ground_truth", ground_truth),
        Route("/_sim/clock", set_clock, methods=["POST"]),
        Route("/_sim/stats", stats),
    ])
    app.state.eb = EnableBankingState(config)
    app.state.public_key = serialization.load_pem_public_key(config.public_key)
    return app


@dataclass
class SimHandle:
    base_url: str
    port: int
    state: EnableBankingState


@contextlib.contextmanager
def run_in_thread(config: EnableBankingSimConfig, host: str = "127.0.0.1", port: int = 0) -> Iterator[SimHandle]:
    """Serve the simulator on `host:port` (0 = a free port) in a daemon thread for the `with` block."""
    app = create_app(config)
    sock = bind_socket(host, port, "the Enable Banking simulator")
    app.state.eb.base_url = base_url = url_of(sock)
    with serve_in_thread(app, sock, "enablebanking-simulator"):
        yield SimHandle(base_url, sock.getsockname()[1], app.state.eb)

