"""A local simulator of Enable Banking's AIS API, serving the TrueLayer simulator's generated users.

    from bank_pipeline.simulator.enablebanking import EnableBankingSimConfig, run_in_thread
    with run_in_thread(EnableBankingSimConfig(public_key=pem, today=date(2026, 11, 20))) as sim:
        sim.base_url, sim.state

Every call must carry a JWT signed with the private key whose public half is configured. The
user grants a consent at `/_sim/authorize/{authorization_id}?user=alice`; admin endpoints under
`/_sim/` give the ground truth, move the simulated day and count the bank reads.
"""

from bank_pipeline.simulator.enablebanking.app import SimHandle, create_app, run_in_thread
from bank_pipeline.simulator.enablebanking.config import EnableBankingSimConfig
from bank_pipeline.simulator.enablebanking.state import EnableBankingState

__all__ = ["EnableBankingSimConfig", "EnableBankingState", "SimHandle", "create_app", "run_in_thread"]
