"""Which JWKS URLs (`jku`) the webhook receiver trusts, from BANK_PIPELINE_WEBHOOK_JKU_ALLOWLIST.

A webhook names the key set that verifies it; trusting any `jku` would let anyone sign with
their own key. Only exact URLs on this list are ever fetched.
"""

from __future__ import annotations

import os

from bank_pipeline.config import SIMULATOR_DEFAULT_PORT

ALLOWLIST_ENV = "BANK_PIPELINE_WEBHOOK_JKU_ALLOWLIST"
SIMULATOR_JKU = f"http://127.0.0.1:{SIMULATOR_DEFAULT_PORT}/_sim/jwks"
TRUELAYER_JKUS = (
    "https://webhooks.truelayer.com/.well-known/jwks",
    "https://webhooks.truelayer-sandbox.com/.well-known/jwks",
)


def default_jku_allowlist(truelayer_env: str | None = None) -> list[str]:
    """TrueLayer's live and sandbox JWKS, plus the local simulator's unless running against TrueLayer."""
    env = (truelayer_env or os.environ.get("BANK_PIPELINE_TRUELAYER_ENV") or "simulator").lower()
    return ([SIMULATOR_JKU] if env == "simulator" else []) + list(TRUELAYER_JKUS)


def jku_allowlist_from_env() -> list[str]:
    """The comma-separated allow-list from the environment, else `default_jku_allowlist()`."""
    raw = os.environ.get(ALLOWLIST_ENV, "")
    items = [item.strip() for item in raw.split(",") if item.strip()]
    return items or default_jku_allowlist()
