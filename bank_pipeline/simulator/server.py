"""Running the simulator: in a background thread (tests, demos) or in the foreground (CLI)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bank_pipeline.serving import bind_socket, make_server, serve_in_thread, url_of
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


@contextlib.contextmanager
def run_in_thread(
    config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
) -> Iterator[SimulatorHandle]:
    """Serve the simulator on `host:port` (0 = a free port) in a daemon thread for the `with` block."""
    config = config or SimulatorConfig()
    app = create_app(config)
    sock = bind_socket(host, port, "the simulator")
    app.state.sim.base_url = base_url = url_of(sock)
    with serve_in_thread(app, sock, "truelayer-simulator", log_level):
        yield SimulatorHandle(base_url, host, sock.getsockname()[1], app, app.state.sim)


def serve_forever(
    config: SimulatorConfig, host: str, port: int, log_level: str = "info", on_ready=None
) -> None:
    """Run in the foreground until interrupted (the CLI)."""
    app = create_app(config)
    sock = bind_socket(host, port, "the simulator")
    app.state.sim.base_url = url_of(sock)
    if on_ready:
        on_ready(app.state.sim.base_url)
    try:
        make_server(app, log_level).run(sockets=[sock])
    finally:
        sock.close()
