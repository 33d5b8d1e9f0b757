"""Run the `bank-pipeline` CLI as a user would, in this process: settings as environment variables.

`bank-pipeline connect` is where history is imported (attended calls, then Dagster runs into the
instance named by DAGSTER_HOME), so tests that follow the user's path connect through it rather
than through the library function.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

from bank_pipeline.config import Settings
from bank_pipeline_tests.dagster_services import settings_env


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set these variables for the block, then restore what was there."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_cli(settings: Settings, argv: list[str], *, dagster_home: Path | None = None) -> tuple[int, str]:
    """`bank-pipeline ARGV` with `settings` in the environment; returns (exit code, stdout + stderr)."""
    from bank_pipeline.cli import main

    env = settings_env(settings)
    if dagster_home is not None:
        env["DAGSTER_HOME"] = str(dagster_home)
    output = io.StringIO()
    with environment(env), contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        code = main(argv)
    return code, output.getvalue()


def connect_user(settings: Settings, user: str, *, dagster_home: Path, history_days: int | None = None) -> str:
    """`bank-pipeline connect --simulator-user USER` (history imported into `dagster_home`'s instance)."""
    argv = ["connect", "--simulator-user", user, "--no-browser"]
    if history_days is not None:
        argv += ["--history-days", str(history_days)]
    code, output = run_cli(settings, argv, dagster_home=dagster_home)
    if code != 0:
        raise AssertionError(f"bank-pipeline {' '.join(argv)} exited {code}:\n{output[-4000:]}")
    return output
