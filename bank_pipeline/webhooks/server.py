"""Serving the webhook app: a blocking server for the CLI and a loopback one in a thread for tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from sqlalchemy import Engine
from starlette.applications import Starlette

from bank_pipeline.serving import bind_socket, serve_in_thread, url_of
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
    sock = bind_socket(host, port, "the webhook receiver")
    base_url = url_of(sock)
    with serve_in_thread(app, sock, "webhook-server"):
        yield RunningWebhookServer(base_url=base_url, url=base_url + path, app=app)
