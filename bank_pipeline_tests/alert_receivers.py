"""Real alert receivers on loopback: an SMTP server (aiosmtpd) and an HTTP push endpoint, each able
to go down and come back on the same port."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

SMTP_USER = "bank-pipeline"
SMTP_PASSWORD = "smtp-SECRET-pw-5150"
PUSH_TOKEN = "push-SECRET-token-8086"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PushReceiver:
    """An HTTP server that records each JSON body POSTed to /hook/<PUSH_TOKEN> (Apprise `json://`)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[dict] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The Apprise URL: basic-auth password and a token in the path, both secrets."""
        return f"json://alerts:{PUSH_TOKEN}@127.0.0.1:{self.port}/hook/{PUSH_TOKEN}"

    def start(self) -> PushReceiver:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                if self.path == f"/hook/{PUSH_TOKEN}":
                    received.append(json.loads(body))
                    self.send_response(200)
                else:
                    self.send_response(404)
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class SmtpReceiver:
    """An SMTP server (aiosmtpd) requiring a login, recording each message it accepts."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[bytes] = []
        messages = self.messages

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802
                messages.append(envelope.content)
                return "250 OK"

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login == SMTP_USER.encode()
                and auth_data.password == SMTP_PASSWORD.encode()
            )
            return AuthResult(success=ok)

        self._controller = Controller(
            Handler(), hostname="127.0.0.1", port=self.port, authenticator=authenticate, auth_require_tls=False
        )

    @property
    def url(self) -> str:
        return (
            f"mailto://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{self.port}"
            "?mode=insecure&from=bank-pipeline@example.org&to=me@example.org"
        )

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
