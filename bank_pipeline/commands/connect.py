"""`bank-pipeline connect`, `status` and `rotate-keys`.

`connect` runs the OAuth 2 authorisation-code flow with PKCE (S256): it stores a random state and
the (encrypted) code verifier, opens the auth link in a browser, receives the redirect on a local
callback server (GET query or `response_mode=form_post`), checks the state, exchanges the code,
stores the encrypted tokens, discovers the accounts and cards, and prints a summary.
`--simulator-user NAME` answers the local simulator's consent page unattended (simulator only).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import html
import logging
import queue
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx

from bank_pipeline import clock
from bank_pipeline.cli_args import int_between, number_between, port
from bank_pipeline.config import Settings
from bank_pipeline.connections import (
    ConnectionStore,
    consent_warnings,
    discover_accounts,
    format_status,
    status_summary,
)
from bank_pipeline.crypto import TokenCipher, rotate_stored_tokens
from bank_pipeline.db import make_engine, migrate
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.truelayer.auth import AuthClient, build_auth_link
from bank_pipeline.truelayer.client import DataClient

log = logging.getLogger(__name__)

REJECTIONS_SHOWN_DAYS = 7  # `status` lists refused webhook requests of the last week


@dataclass
class ConnectResult:
    connection_id: int
    accounts: list[dict] = field(default_factory=list)


# --- the local callback server ------------------------------------------------------------------

_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>bank-pipeline</title></head>"
    "<body style='font-family:sans-serif'><h2>{title}</h2><p>{text}</p></body></html>"
)


class CallbackServer:
    """A one-shot HTTP server for the OAuth redirect on the redirect URI's host, port and path."""

    def __init__(self, redirect_uri: str) -> None:
        parts = urlsplit(redirect_uri)
        if parts.scheme != "http" or not parts.hostname:
            raise BankPipelineError(
                f"TRUELAYER_REDIRECT_URI must be a local http:// URL to receive the redirect, got {redirect_uri!r}"
            )
        self.path = parts.path or "/"
        self.results: queue.Queue[dict[str, str]] = queue.Queue()
        self.expected_state: str | None = None  # set once `connect` has issued its state
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # the query holds the code: keep it out of logs
                pass

            def _answer(self, params: dict[str, list[str]]) -> None:
                if urlsplit(self.path).path != server.path:
                    self.send_error(404)
                    return
                flat = {k: v[0] for k, v in params.items() if v}
                server.results.put(flat)
                # The page never claims more than the terminal: a refused redirect shows the very
                # error `connect` fails with; a valid one is only authorised until the code exchange.
                problem = callback_problem(flat, server.expected_state)
                if problem:
                    title, text = "Not connected", f"error: {problem}"
                else:
                    title, text = (
                        "Authorised",
                        "bank-pipeline is finishing the connection; the terminal shows the result.",
                    )
                body = _PAGE.format(title=html.escape(title), text=html.escape(text)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(parse_qs(urlsplit(self.path).query))

            def do_POST(self) -> None:  # noqa: N802  (response_mode=form_post)
                declared = (self.headers.get("Content-Length") or "0").strip()
                if not (declared.isascii() and declared.isdigit() and int(declared) <= 64 * 1024):
                    self.send_error(413 if declared.isdigit() else 400)
                    return
                length = int(declared)
                raw = self.rfile.read(length).decode("utf-8", "replace") if length else ""
                self._answer(parse_qs(raw))

        try:
            self.httpd = ThreadingHTTPServer((parts.hostname, parts.port or 80), Handler)
        except OSError as exc:
            raise BankPipelineError(
                f"cannot listen for the bank's redirect on {parts.hostname}:{parts.port} ({exc.strerror}); "
                "free the port or pass --redirect-port (and allow that redirect URI in TrueLayer's console)"
            ) from None
        port = self.httpd.server_address[1]
        netloc = f"{parts.hostname}:{port}"
        self.redirect_uri = urlunsplit((parts.scheme, netloc, self.path, "", ""))
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="oauth-callback", daemon=True)

    def __enter__(self) -> CallbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def wait(self, timeout: float) -> dict[str, str]:
        try:
            return self.results.get(timeout=timeout)
        except queue.Empty:
            raise BankPipelineError(
                f"no redirect from the bank within {timeout:g}s on {self.redirect_uri}; run `bank-pipeline connect` "
                "again (use --timeout for more time)"
            ) from None


def callback_problem(callback: dict[str, str], expected_state: str | None) -> str | None:
    """Why a redirect cannot complete this connect, as the one-line error both the CLI and the
    browser page show; None when it carries a code and the state this connect issued."""
    if callback.get("error"):
        detail = callback.get("error_description") or ""
        return f"the bank connection was not authorised: {callback['error']}{': ' + detail if detail else ''}"
    if expected_state is None or callback.get("state") != expected_state:
        return "state mismatch: the redirect's state is not the one this connect issued; start again"
    if not callback.get("code"):
        return "the bank's redirect carried no authorization code; start again"
    return None


def _with_port(redirect_uri: str, port: int) -> str:
    parts = urlsplit(redirect_uri)
    return urlunsplit((parts.scheme, f"{parts.hostname}:{port}", parts.path, parts.query, ""))


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = values.get("action")
        elif tag == "input" and values.get("name"):
            self.fields[values["name"]] = values.get("value", "")


def _parse_form(page: str) -> tuple[str, dict[str, str]]:
    """The action and fields of an auto-submitting `form_post` page."""
    parser = _FormParser()
    parser.feed(page)
    if not parser.action:
        raise BankPipelineError("the auth server's form_post page has no form action")
    return parser.action, parser.fields


def _simulator_consent(
    link: str, auth_url: str, user: str, *, decision: str = "allow", timeout: float = 30
) -> None:
    """Answer the simulator's consent page like a user would: GET the link, POST /consent, follow the
    redirect to the local callback server over real HTTP."""
    params = dict(httpx.URL(link).params.multi_items())
    with httpx.Client(timeout=timeout, follow_redirects=False) as http:
        page = http.get(link)
        if page.status_code != 200:
            raise BankPipelineError(
                f"the simulator's auth page answered HTTP {page.status_code}: {page.text[:200]}"
            )
        answer = http.post(f"{auth_url}/consent", data={**params, "user": user, "decision": decision})
        if answer.status_code in (301, 302, 303, 307):
            response = http.get(answer.headers["location"])
        elif answer.status_code == 200 and "<form" in answer.text:  # response_mode=form_post
            action, fields = _parse_form(answer.text)
            response = http.post(action, data=fields)
        else:
            raise BankPipelineError(
                f"the simulator refused the consent for user {user!r}: HTTP {answer.status_code} {answer.text[:200]}"
            )
        if response.status_code != 200:
            raise BankPipelineError(f"the local callback server answered HTTP {response.status_code}")


def connect(
    settings: Settings,
    *,
    simulator_user: str | None = None,
    open_browser: bool = True,
    timeout: float = 300,
    providers: str | None = None,
    redirect_port: int | None = None,
    response_mode: str | None = None,
    assume_simulator: bool = False,
    decision: str = "allow",
    out: Callable[[str], None] = print,
) -> ConnectResult:
    """The whole connect flow. Returns the new connection's id and its accounts (rows as dicts)."""
    if simulator_user and not (settings.truelayer_env == "simulator" or assume_simulator):
        raise BankPipelineError(
            f"--simulator-user only works against the local simulator, but BANK_PIPELINE_TRUELAYER_ENV is "
            f"{settings.truelayer_env!r}"
        )
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
        cipher = TokenCipher.from_settings(settings)
        auth = AuthClient(settings.auth_url, settings.client_id, settings.client_secret)
        store = ConnectionStore(engine, cipher, auth)
        redirect_uri = settings.redirect_uri
        if redirect_port is not None:
            redirect_uri = _with_port(redirect_uri, redirect_port)
        with CallbackServer(redirect_uri) as server:
            redirect_uri = server.redirect_uri  # the real port when 0 was asked for
            started = store.create_state(redirect_uri, providers)
            server.expected_state = started.state
            link = build_auth_link(
                settings.auth_url,
                settings.client_id,
                redirect_uri,
                settings.scopes,
                started.state,
                started.code_challenge,
                providers=providers,
                response_mode=response_mode,
            )
            if simulator_user:
                out(f"Connecting simulator user {simulator_user!r} unattended…")
                _simulator_consent(link, settings.auth_url, simulator_user, decision=decision)
            else:
                if open_browser:
                    out("Opening your browser to connect your bank. If it does not open, visit:")
                    out(link)
                    webbrowser.open(link)
                else:
                    out("Open this link in a browser to connect your bank:")
                    out(link)
                out(f"Waiting up to {timeout:g}s for the bank to redirect to {redirect_uri} …")
            callback = server.wait(timeout)
        problem = callback_problem(callback, started.state)
        if problem:
            if callback.get("state") == started.state:
                with contextlib.suppress(BankPipelineError):
                    store.consume_state(started.state)  # spent either way; the page showed `problem`
            raise BankPipelineError(problem)
        verifier, stored_redirect = store.consume_state(callback.get("state"))
        tokens = auth.exchange_code(callback["code"], stored_redirect, verifier)
        with DataClient(settings.data_url, lambda: tokens.access_token, psu_ip=settings.psu_ip) as client:
            me = client.me()
            connection_id = store.save_connection(tokens, me)
            found = discover_accounts(engine, client, connection_id)
        provider = (me.get("provider") or {}).get("display_name") or (me.get("provider") or {}).get(
            "provider_id"
        )
        out(f"Connected {provider or 'bank'} as connection {connection_id}; {len(found)} account(s)/card(s):")
        for account in found:
            out(
                f"  {account['account_key']}  {account['kind']:<7} {account['display_name'] or '?'} ({account['currency'] or '?'})"
            )
        if me.get("consent_expires_at"):
            out(f"Consent expires {me['consent_expires_at']}; run `bank-pipeline connect` again before then.")
        return ConnectResult(connection_id, found)
    finally:
        engine.dispose()


# --- CLI ----------------------------------------------------------------------------------------


def _connect_cmd(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.providers:
        providers = " ".join(p for chunk in args.providers for p in chunk.replace(",", " ").split())
    else:
        providers = None
    result = connect(
        settings,
        simulator_user=args.simulator_user,
        open_browser=not args.no_browser,
        timeout=args.timeout,
        providers=providers,
        redirect_port=args.redirect_port,
        response_mode="form_post" if args.form_post else None,
        assume_simulator=args.simulator,
    )
    if args.history_days == 0:
        return 0
    from bank_pipeline.commands.imports import dagster_instance, report_runs
    from bank_pipeline.history import history_window, import_history, land_history

    window = history_window(settings, args.history_days)
    print(f"Fetching history {window.first}..{window.last} while you are here (attended calls, inside the "
          "bank's SCA window):")
    land_history(settings, result.connection_id, result.accounts, window)
    print("Importing it through Dagster (runs replay what landed; no bank call):")
    with dagster_instance(settings) as instance:
        outcomes = import_history(instance, settings, [a["account_key"] for a in result.accounts], window)
    return report_runs(outcomes)





def _status_cmd(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
        print(format_status(status_summary(engine, within_days=args.warn_days)))
        from bank_pipeline.webhooks.rejections import format_rejections, rejection_summary

        since = clock.today_utc() - dt.timedelta(days=REJECTIONS_SHOWN_DAYS - 1)
        rejected = rejection_summary(engine, since)
        if rejected:
            print(format_rejections(rejected, since))
    finally:
        engine.dispose()
    return 0


def _rotate_cmd(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
        count = rotate_stored_tokens(engine, TokenCipher.from_settings(settings))
    finally:
        engine.dispose()
    print(f"re-encrypted {count} stored secret(s) under the first key; older keys can now be removed")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("connect", help="connect a bank through TrueLayer (OAuth with PKCE)")
    p.add_argument("--no-browser", action="store_true", help="print the link instead of opening a browser")
    p.add_argument(
        "--redirect-port", type=port, default=None, help="port of the local redirect URI (0: any free port)"
    )
    p.add_argument(
        "--simulator-user",
        metavar="NAME",
        help="answer the local simulator's consent as NAME (simulator only)",
    )
    p.add_argument(
        "--simulator", action="store_true", help="the auth URL is a local simulator (allows --simulator-user)"
    )
    p.add_argument(
        "--history-days",
        type=int,
        default=None,
        metavar="N",
        help="days of history to import right away (default BANK_PIPELINE_HISTORY_DAYS, 730; 0: none)",
    )
    p.add_argument(
        "--providers",
        nargs="+",
        metavar="PROVIDER",
        help="restrict the bank picker (e.g. uk-ob-all uk-oauth-all)",
    )
    p.add_argument("--form-post", action="store_true", help="ask for response_mode=form_post")
    p.add_argument(
        "--timeout",
        type=number_between(1, 86400, "a number of seconds"),
        default=300,
        help="seconds to wait for the redirect (default 300)",
    )
    p.set_defaults(func=_connect_cmd)

    s = subparsers.add_parser("status", help="connections, consent expiry and accounts (no secrets)")
    s.add_argument(
        "--warn-days",
        type=int_between(0, 3650, "a day count"),
        default=7,
        help="warn when consent ends within this many days",
    )
    s.set_defaults(func=_status_cmd)

    r = subparsers.add_parser(
        "rotate-keys", help="re-encrypt stored tokens under the first BANK_PIPELINE_FERNET_KEYS key"
    )
    r.set_defaults(func=_rotate_cmd)


__all__ = ["CallbackServer", "ConnectResult", "callback_problem", "connect", "consent_warnings", "register"]
