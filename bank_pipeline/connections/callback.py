"""The local server that receives the bank's OAuth redirect (a GET query, or a POST form for
`response_mode=form_post`) on the redirect URI's loopback host, port and path.

Starlette on uvicorn in a thread (`bank_pipeline.serving`), bound to loopback only. The browser
is left on a page that never claims more than the terminal: a refused redirect (wrong state, no
code, the bank's error) shows at once the very error `connect` fails with; a valid one waits for
`connect` to finish and then says "Connected", or shows the error it failed with.
"""

from __future__ import annotations

import html
import queue
import threading
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from bank_pipeline.display import escaped
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.serving import bind_socket, serve_in_thread

# Redirect URI host -> the address listened on: loopback only (the code must not reach the network).
LOOPBACK = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1", "::1": "::1"}
MAX_FORM_BYTES = 64 * 1024
# How long a valid redirect's page waits for `connect` to exchange the code and find the accounts.
OUTCOME_WAIT_SECONDS = 120.0

_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>bank-pipeline</title></head>"
    "<body style='font-family:sans-serif'><h2>{title}</h2><p>{text}</p></body></html>"
)


def _page(title: str, text: str) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=html.escape(title), text=html.escape(text)))


def _first_values(query: str) -> dict[str, str]:
    """Each parameter's first non-empty value."""
    flat: dict[str, str] = {}
    for key, value in parse_qsl(query):
        flat.setdefault(key, value)
    return flat


def callback_problem(callback: dict[str, str], expected_state: str | None) -> str | None:
    """Why a redirect cannot complete this connect, as the one-line error both the CLI and the
    browser page show; None when it carries a code and the state this connect issued."""
    if callback.get("error"):
        detail = escaped(callback.get("error_description") or "")  # the redirect's words, one line
        return f"the bank connection was not authorised: {escaped(callback['error'], 80)}{': ' + detail if detail else ''}"
    if expected_state is None or callback.get("state") != expected_state:
        return "state mismatch: the redirect's state is not the one this connect issued; start again"
    if not callback.get("code"):
        return "the bank's redirect carried no authorization code; start again"
    return None


class CallbackServer:
    """Serves the redirect URI for one `connect` (a `with` block); `wait` returns the redirect's
    parameters, `connected` puts the outcome on the browser's page."""

    def __init__(self, redirect_uri: str) -> None:
        parts = urlsplit(redirect_uri)
        host = LOOPBACK.get(parts.hostname or "")
        if parts.scheme != "http" or host is None:
            raise BankPipelineError(
                "TRUELAYER_REDIRECT_URI must be a loopback http:// URL (127.0.0.1, localhost or [::1]) to "
                f"receive the redirect, got {redirect_uri!r}"
            )
        self.path = parts.path or "/"
        self.expected_state: str | None = None  # set once `connect` has issued its state
        self._results: queue.Queue[dict[str, str] | BankPipelineError] = queue.Queue()
        self._outcome = ("Not connected", "bank-pipeline stopped; the terminal shows why.")
        self._finished = threading.Event()
        self._sock = bind_socket(
            host, parts.port or 80, "the callback server for the bank's redirect",
            hint="free the port or pass --redirect-port (and allow that redirect URI in TrueLayer's console)",
        )
        self.redirect_uri = urlunsplit(("http", _netloc(parts.hostname, self._sock.getsockname()[1]), self.path, "", ""))
        app = Starlette(routes=[Route(self.path, self._callback, methods=["GET", "POST"])])
        self._serving = serve_in_thread(app, self._sock, "oauth-callback")

    async def _callback(self, request: Request) -> Response:
        query = request.url.query
        if request.method == "POST":
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_FORM_BYTES:
                    return PlainTextResponse("form too large", status_code=413)
            query = body.decode("utf-8", "replace")
        callback = _first_values(query)
        self._results.put(callback)
        problem = callback_problem(callback, self.expected_state)
        if problem:
            return _page("Not connected", f"error: {problem}")
        if not await anyio.to_thread.run_sync(self._finished.wait, OUTCOME_WAIT_SECONDS):
            return _page("Authorised", "bank-pipeline is still finishing the connection; the terminal shows the result.")
        return _page(*self._outcome)

    def __enter__(self) -> CallbackServer:
        self._serving.__enter__()
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if not self._finished.is_set():  # `connect` failed: the page shows what the terminal does
            if isinstance(exc, BankPipelineError):
                self._outcome = ("Not connected", f"error: {exc}")
            self._finished.set()
        self._serving.__exit__(exc_type, exc, tb)  # waits for the pages in flight

    def connected(self, text: str) -> None:
        """The connection is stored: the waiting page says so."""
        self._outcome = ("Connected", text)
        self._finished.set()

    def abandon(self, error: BankPipelineError) -> None:
        """No redirect is coming (the consent bot failed): `wait` raises `error` at once."""
        self._results.put(error)

    def wait(self, timeout: float) -> dict[str, str]:
        try:
            result = self._results.get(timeout=timeout)
        except queue.Empty:
            raise BankPipelineError(
                f"no redirect from the bank within {timeout:g}s on {self.redirect_uri}; run `bank-pipeline connect` "
                "again (use --timeout for more time)"
            ) from None
        if isinstance(result, BankPipelineError):
            raise result
        return result


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def with_port(redirect_uri: str, port: int) -> str:
    parts = urlsplit(redirect_uri)
    return urlunsplit((parts.scheme, _netloc(parts.hostname or "", port), parts.path, parts.query, ""))
