"""A local simulator of TrueLayer's auth server and Data API v1, with admin hooks and webhooks.

    from bank_pipeline.simulator import SimulatorConfig, FaultConfig, run_in_thread
    with run_in_thread(SimulatorConfig(seed=7, today=date(2026, 11, 20))) as sim:
        sim.base_url, sim.auth_url, sim.data_url, sim.app_state

See docs/architecture.md for the admin endpoints (`/_sim/...`).
"""

from bank_pipeline.simulator.app import create_app
from bank_pipeline.simulator.config import FaultConfig, SimulatorConfig
from bank_pipeline.simulator.server import SimulatorHandle, run_in_thread, serve_forever
from bank_pipeline.simulator.state import SimulatorState

__all__ = [
    "FaultConfig",
    "SimulatorConfig",
    "SimulatorHandle",
    "SimulatorState",
    "create_app",
    "run_in_thread",
    "serve_forever",
]
