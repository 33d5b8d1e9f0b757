"""Running the simulator: in a background thread (tests, demos) or in the foreground (CLI)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from bank_pipeline.errors import BankPipelineError
from bank_pipeline.simulator.app import create_app
from bank_pipeline.simulator.config import SimulatorConfig
from bank_pipeline.simulator.state import SimulatorState


@dataclass
class SimulatorHandle:
    """A running simulator: its URLs and its state (for in-process inspection)."""

    base_url: str
    host: str
    port: int
    app: Any
    app_state: SimulatorState

    @property
    def auth_url(self) -> str:
        return self.base_url

    @property
    def data_url(self) -> str:
        return self.base_url + "/data/v1"


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BankPipelineError(
            f"the simulator cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _server(app: Any, log_level: str) -> uvicorn.Server:
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off")
    return uvicorn.Server(config)


@contextlib.contextmanager
def run_in_thread(
    config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
) -> Iterator[SimulatorHandle]:
    """Serve the simulator on `host:port` (0 = a free port) in a daemon thread for the `with` block."""
    config = config or SimulatorConfig()
    app = create_app(config)
    sock = bind_socket(host, port)
    actual_port = sock.getsockname()[1]
    base_url = _url(host, actual_port)
    app.state.sim.base_url = base_url
    server = _server(app, log_level)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="truelayer-simulator", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise BankPipelineError(f"the simulator did not start on {base_url}")
        time.sleep(0.01)
    try:
        yield SimulatorHandle(base_url, host, actual_port, app, app.state.sim)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def serve_forever(
    config: SimulatorConfig, host: str, port: int, log_level: str = "info", on_ready=None
) -> None:
    """Run in the foreground until interrupted (the CLI)."""
    app = create_app(config)
    sock = bind_socket(host, port)
    app.state.sim.base_url = _url(host, sock.getsockname()[1])
    if on_ready:
        on_ready(app.state.sim.base_url)
    try:
        _server(app, log_level).run(sockets=[sock])
    finally:
        sock.close()
