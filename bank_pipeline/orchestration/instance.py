"""The one Dagster instance configuration, wherever the pipeline runs.

Dagster reads its instance from `DAGSTER_HOME/dagster.yaml`; without one it falls back to its stock
SQLite storage (a disk flush per event), telemetry on and a welcome banner in the middle of the
CLI's output. So the tuned configuration ships inside the package (`dagster.yaml` beside this
module, its locations relative to the instance directory) and every entry point writes it into the
instance directory before it opens the instance:

- the CLI and the demo (`bank_pipeline.runner.ensure_dagster_home`);
- `make ui`, the daemon and `dagster job execute`: `export $(python -m bank_pipeline.orchestration.instance)`
  prints `DAGSTER_HOME=…` and the event-log tuning (`tuning.py`) after writing the file.

The instance directory is DAGSTER_HOME when set, else BANK_PIPELINE_HOME/dagster. A dagster.yaml
there that this module did not write (e.g. deploy/postgres's) is left as it is.
"""

from __future__ import annotations

import os
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from bank_pipeline.config import home_dir

INSTANCE_FILE = "dagster.yaml"
# The first line of a dagster.yaml this module wrote: such a file is rewritten when the packaged
# configuration (or the directory's location) changes; any other file is the operator's own.
WRITTEN_HEADER = "# Written by bank_pipeline from its packaged instance configuration"


def packaged_config() -> dict[str, Any]:
    """The package's dagster.yaml as a dict (relative locations, as shipped)."""
    return yaml.safe_load(files(__package__).joinpath(INSTANCE_FILE).read_text(encoding="utf-8"))


def instance_config(home: Path) -> dict[str, Any]:
    """The packaged configuration with every relative `base_dir` made absolute under `home`
    (Dagster resolves relative ones against the working directory, which differs per process)."""

    def place(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: str((home / value).resolve()) if key == "base_dir" and not Path(value).is_absolute() else place(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [place(item) for item in node]
        return node

    return place(packaged_config())


def dagster_home(bank_pipeline_home: Path | None = None) -> Path:
    """DAGSTER_HOME when set, else `bank_pipeline_home` (default BANK_PIPELINE_HOME) / dagster."""
    configured = os.environ.get("DAGSTER_HOME")
    if configured:
        return Path(configured).resolve()
    return ((bank_pipeline_home or home_dir()) / "dagster").resolve()


def write_instance_config(home: Path) -> Path:
    """Make `home` an instance directory with the packaged configuration, unless it already holds
    a dagster.yaml of the operator's own; returns the file. Safe when processes start together: the
    file is replaced in one step, never seen half-written."""
    home.mkdir(parents=True, exist_ok=True)
    target = home / INSTANCE_FILE
    text = f"{WRITTEN_HEADER} (bank_pipeline/orchestration/dagster.yaml, comments there).\n" + yaml.safe_dump(
        instance_config(home), sort_keys=False
    )
    try:
        current = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    if current == text or (current is not None and not current.startswith(WRITTEN_HEADER)):
        return target
    fd, temporary = tempfile.mkstemp(dir=home, prefix=".dagster.yaml.")
    os.fchmod(fd, 0o644)  # readable like any configuration file (it holds no secret)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temporary, target)
    return target


def prepare_dagster_home(bank_pipeline_home: Path | None = None) -> Path:
    """The instance directory, configured, and DAGSTER_HOME set to it in this process (and so in
    the processes it starts)."""
    home = dagster_home(bank_pipeline_home)
    write_instance_config(home)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def instance_environment() -> dict[str, str]:
    """What a Dagster process of the pipeline needs in its environment: the configured instance
    directory and the event-log tuning (a value already set wins, as in `tuning.py`)."""
    from bank_pipeline.orchestration.tuning import EVENT_LOG_ENVIRONMENT

    env = {"DAGSTER_HOME": str(prepare_dagster_home())}
    env.update({name: os.environ.get(name) or value for name, value in EVENT_LOG_ENVIRONMENT.items()})
    return env


if __name__ == "__main__":  # `env $(python -m bank_pipeline.orchestration.instance) dg dev …`
    print(" ".join(f"{name}={value}" for name, value in instance_environment().items()))
