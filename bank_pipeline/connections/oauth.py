"""The OAuth 2 side of connecting a bank: single-use state with its PKCE verifier (stored encrypted
until the callback), and the one-shot local server that receives the bank's redirect.
"""

from __future__ import annotations

import datetime as dt
import html
import queue
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit, urlunsplit

import sqlalchemy as sa

from bank_pipeline.crypto import TokenCipher
from bank_pipeline.db import utcnow, write_transaction
from bank_pipeline.db.schema import oauth_states
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.timestamps import aware
from bank_pipeline.truelayer.auth import generate_pkce

STATE_TTL = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class OAuthState:
    """A started authorisation: send `state` and `code_challenge` in the link; keep the verifier secret."""

    state: str
    code_challenge: str
    code_verifier: str = field(repr=False)
    redirect_uri: str
    expires_at: dt.datetime



class OAuthStates:
    """The `oauth_states` table: states this machine issued, each usable once before it expires."""

    def __init__(self, engine: sa.Engine, cipher: TokenCipher) -> None:
        self.engine = engine
        self.cipher = cipher

    def create_state(
        self, redirect_uri: str, providers: str | None = None, ttl: dt.timedelta = STATE_TTL
    ) -> OAuthState:
        """A fresh random state and PKCE pair; the verifier is stored encrypted until the callback."""
        state = secrets.token_urlsafe(32)
        verifier, challenge = generate_pkce()
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                sa.delete(oauth_states).where(oauth_states.c.expires_at < now - dt.timedelta(days=1))
            )
            conn.execute(
                sa.insert(oauth_states).values(
                    state=state,
                    code_verifier_enc=self.cipher.encrypt(verifier),
                    redirect_uri=redirect_uri,
                    providers=providers,
                    created_at=now,
                    expires_at=now + ttl,
                )
            )
        return OAuthState(state, challenge, verifier, redirect_uri, now + ttl)

    def consume_state(self, state: str | None) -> tuple[str, str]:
        """(code_verifier, redirect_uri) for a callback's state; single use, unexpired, known — or
        BankPipelineError("state mismatch …")."""
        if not state:
            raise BankPipelineError(
                "state mismatch: the bank's redirect carried no state; start again with `bank-pipeline connect`"
            )
        now = utcnow()
        with write_transaction(self.engine) as conn:
            row = conn.execute(
                sa.select(oauth_states).where(oauth_states.c.state == state).with_for_update()
            ).first()
            if row is None:
                problem = "the redirect's state is not one this machine issued"
            elif row.consumed_at is not None:
                problem = "the redirect's state was already used (a replayed or duplicate redirect)"
            elif aware(row.expires_at) < now:
                problem = "the authorisation took too long and its state expired"
            else:
                problem = None
                conn.execute(
                    sa.update(oauth_states).where(oauth_states.c.state == state).values(consumed_at=now)
                )
        if problem:
            raise BankPipelineError(f"state mismatch: {problem}; start again with `bank-pipeline connect`")
        return self.cipher.decrypt(row.code_verifier_enc), row.redirect_uri


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


def with_port(redirect_uri: str, port: int) -> str:
    parts = urlsplit(redirect_uri)
    return urlunsplit((parts.scheme, f"{parts.hostname}:{port}", parts.path, parts.query, ""))
