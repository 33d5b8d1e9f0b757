"""Serving an ASGI app from a background thread (the simulator, the webhook receiver, the OAuth
callback): bind the socket first (so the port is known and a busy one is a one-line error), run
uvicorn on it, wait until it serves, and stop it gracefully (requests in flight finish).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from bank_pipeline.errors import BankPipelineError


def bind_socket(host: str, port: int, what: str, hint: str = "") -> socket.socket:
    """A listening socket on host:port (0 = a free port), or BankPipelineError naming `what`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BankPipelineError(
            f"{what} cannot listen on {host}:{port}: {exc.strerror or exc}{'; ' + hint if hint else ''}"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_server(app: Any, log_level: str = "warning", **config: Any) -> uvicorn.Server:
    """No access log: callback and webhook URLs carry codes and ids."""
    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off", **config))


@contextlib.contextmanager
def serve_in_thread(app: Any, sock: socket.socket, name: str, log_level: str = "warning") -> Iterator[uvicorn.Server]:
    """Serve `app` on `sock` in a daemon thread for the `with` block; the socket is closed after.
    The process's logging configuration is left alone (the CLI and the tests own it)."""
    server = make_server(app, log_level, log_config=None)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise BankPipelineError(f"the {name} server did not start on {url_of(sock)}")
            time.sleep(0.01)
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
