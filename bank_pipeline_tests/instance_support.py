"""The repository's dagster.yaml, relocated under a temporary directory (for tests and benches).

The embedded default keeps Dagster's state under relative paths (`.bank_pipeline/dagster/...`),
resolved against the working directory; tests and benches must not write into the checkout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO_DAGSTER_YAML = Path(__file__).resolve().parents[1] / "dagster.yaml"
STORAGE_KEYS = ("storage", "run_storage", "event_log_storage", "schedule_storage")


def repo_instance_config(under: Path) -> dict[str, Any]:
    """The repo's dagster.yaml as a dict, every relative `base_dir` moved under `under`."""

    def relocate(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: str(under / value) if key == "base_dir" and not Path(value).is_absolute() else relocate(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [relocate(item) for item in node]
        return node

    return relocate(yaml.safe_load(REPO_DAGSTER_YAML.read_text()))


def repo_storage_config(under: Path) -> dict[str, Any]:
    """Only the storage sections of the repo's dagster.yaml (relocated under `under`)."""
    config = repo_instance_config(under)
    return {key: config[key] for key in STORAGE_KEYS if key in config}
