"""Serving the webhook app: a blocking server for the CLI and a loopback one in a thread for tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from sqlalchemy import Engine
from starlette.applications import Starlette

from bank_pipeline.webhooks.app import DEFAULT_PATH, create_webhook_app
from bank_pipeline.webhooks.settings import jku_allowlist_from_env


@dataclass(frozen=True)
class RunningWebhookServer:
    base_url: str  # http://127.0.0.1:<port>
    url: str  # base_url + the webhook path: give this to the sender
    app: Starlette


def serve(app: Starlette, host: str = "127.0.0.1", port: int = 8720) -> None:
    """Run until interrupted (uvicorn handles SIGINT/SIGTERM)."""
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)


@contextmanager
def run_webhook_server_in_thread(
    engine: Engine,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    jku_allowlist: list[str] | None = None,
    path: str = DEFAULT_PATH,
    **app_kwargs: Any,
) -> Iterator[RunningWebhookServer]:
    """Serve the webhook app on a free loopback port for the duration of the block."""
    allowlist = jku_allowlist if jku_allowlist is not None else jku_allowlist_from_env()
    app = create_webhook_app(engine, jku_allowlist=allowlist, path=path, **app_kwargs)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="webhook-server"
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the webhook server did not start")
        time.sleep(0.01)
    base_url = f"http://{host}:{bound_port}"
    try:
        yield RunningWebhookServer(base_url=base_url, url=base_url + path, app=app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
