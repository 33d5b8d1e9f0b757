"""`bank-pipeline connect` for the simulator's `alice` (3 accounts, the default 2 years of history),
as an installed user runs it: its own process, from a temporary directory outside the repository,
only BANK_PIPELINE_HOME set there. Prints the seconds from the consent to the history in the ledger
(each line of the command's output is timestamped as it arrives), each run's seconds beside its
transactions and partitions, and the process's CPU time.

The instance is the configured one (orchestration/instance.py). The baseline is the same command on
Dagster's unconfigured instance (an empty dagster.yaml in DAGSTER_HOME: its stock SQLite storage),
which is what the command got outside the repository before; it takes many minutes, so it runs
only with CONNECT_BASELINE=on.

    python -m bank_pipeline_tests.bench connect_history
    CONNECT_BASELINE=on python -m bank_pipeline_tests.bench connect_history
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 20.0
RUN_LINE = re.compile(r"run \w+: (\d+) new transactions, ([\d.]+)s, (ok|FAILED.*)")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _connect(sim, workdir: Path, *, configured: bool, history_days: int) -> dict:
    home, elsewhere = workdir / "home", workdir / "elsewhere"
    elsewhere.mkdir(parents=True)
    env = {name: value for name, value in os.environ.items() if not name.startswith(("DAGSTER_", "BANK_PIPELINE_"))}
    env.update(BANK_PIPELINE_HOME=str(home), TRUELAYER_AUTH_URL=sim.auth_url, TRUELAYER_DATA_URL=sim.data_url)
    if not configured:
        (workdir / "stock").mkdir()
        (workdir / "stock" / "dagster.yaml").write_text("")  # Dagster's defaults: stock SQLite storage
        env["DAGSTER_HOME"] = str(workdir / "stock")
    cmd = [sys.executable, "-m", "bank_pipeline.cli", "connect", "--simulator-user", "alice", "--no-browser",
           "--redirect-port", "0", "--history-days", str(history_days)]
    cpu_before = _children_cpu()
    started = time.perf_counter()
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(cmd, cwd=elsewhere, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            lines.append((time.perf_counter() - started, line.rstrip("\n")))
    wall = time.perf_counter() - started
    consent = next((t for t, line in lines if line.startswith("Consent expires")), None)
    done = next((t for t, line in lines if "run(s) succeeded" in line), None)
    runs = [(int(m[1]), float(m[2]), m[3]) for _, line in lines if (m := RUN_LINE.search(line))]
    return {
        "code": proc.returncode, "wall": wall, "cpu": _children_cpu() - cpu_before, "runs": runs,
        "after_consent": None if consent is None or done is None else done - consent,
        "summary": next((line for _, line in lines if "run(s) succeeded" in line), "(no summary)"),
        "banner": any("Welcome to Dagster" in line or "Telemetry" in line for _, line in lines),
        "tail": "\n".join(line for _, line in lines[-15:]),
    }


def _report(name: str, outcome: dict, days: int) -> None:
    print(f"    {name}: exit {outcome['code']}; {outcome['summary']}", flush=True)
    if outcome["code"] != 0:
        print(outcome["tail"], flush=True)
    for inserted, seconds, state in outcome["runs"]:
        print(f"      run: {days} partitions, {inserted} transactions, {seconds:.1f}s, {state}", flush=True)
    after = outcome["after_consent"]
    print(f"      consent -> history in the ledger: {'-' if after is None else f'{after:.1f}s'}; whole command "
          f"{outcome['wall']:.1f}s wall, {outcome['cpu']:.1f}s CPU; Dagster banner printed: {outcome['banner']}",
          flush=True)


def run(args) -> None:
    from bank_pipeline.simulator import FaultConfig, SimulatorConfig, run_in_thread

    days = 90 if args.quick else 730
    baseline = os.environ.get("CONNECT_BASELINE", "off") == "on"
    with run_in_thread(SimulatorConfig(seed=42, faults=FaultConfig(unattended_limit=None)), host="127.0.0.1",
                       port=0) as sim, tempfile.TemporaryDirectory() as tmp:
        print(f"--- connect alice, {days} days of history, from a directory outside the repository", flush=True)
        after = _connect(sim, Path(tmp) / "configured", configured=True, history_days=days)
        _report("configured instance (packaged dagster.yaml)", after, days)
        if baseline:
            before = _connect(sim, Path(tmp) / "stock", configured=False, history_days=days)
            _report("baseline: Dagster's unconfigured instance (stock SQLite storage)", before, days)
    ok = after["code"] == 0 and after["after_consent"] is not None
    met = ok and after["after_consent"] <= TARGET_SECONDS
    print(f"    target (consent -> {days} days x 3 accounts in the ledger <= {TARGET_SECONDS:.0f}s, every run ok): "
          f"{'met' if met else 'NOT met'}", flush=True)
