"""`bank-pipeline simulator`: run the local TrueLayer simulator in the foreground."""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

from bank_pipeline.config import (
    SIMULATOR_CLIENT_ID,
    SIMULATOR_CLIENT_SECRET,
    SIMULATOR_DEFAULT_PORT,
    home_dir,
)
from bank_pipeline.errors import BankPipelineError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "simulator",
        help="run the local TrueLayer simulator (auth server + Data API v1)",
        description="Serve a local simulator of TrueLayer's auth server and Data API v1 with synthetic, "
        "deterministic data. Mock users: alice, bob, multi-N (N = 1..1000).",
        epilog="Make it send a signed webhook (as TrueLayer does when transactions are available) to "
        "`bank-pipeline webhook-server`: curl -X POST http://127.0.0.1:8710/_sim/webhooks/send -d "
        "'{\"url\": \"http://127.0.0.1:8720/webhooks/truelayer\", \"user\": \"alice\"}' "
        "(optional: account_id, from, to, type). See docs/simulator.md.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=str,
        default=str(SIMULATOR_DEFAULT_PORT),
        help=f"port (default {SIMULATOR_DEFAULT_PORT}; 0 = any free port)",
    )
    parser.add_argument("--seed", type=str, default="42", help="seed of the synthetic data (default 42)")
    parser.add_argument(
        "--today", default=None, help="the simulator's today, YYYY-MM-DD (default: the real date)"
    )
    parser.add_argument(
        "--faults",
        default=None,
        help="fault injection as JSON (e.g. '{\"rate_limit_every\": 5}') or @file.json",
    )
    parser.add_argument(
        "--state-file",
        default=None,
        help="where issued tokens and consents are kept across restarts "
        "(default <BANK_PIPELINE_HOME>/simulator-state.json)",
    )
    parser.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    """The SimulatorConfig the flags describe; BankPipelineError names the bad flag."""
    from bank_pipeline.simulator import FaultConfig, SimulatorConfig

    try:
        seed = int(args.seed)
    except ValueError:
        raise BankPipelineError(f"--seed must be a whole number, got {args.seed!r}") from None
    try:
        port = int(args.port)
    except ValueError:
        raise BankPipelineError(f"--port must be a whole number, got {args.port!r}") from None
    if not 0 <= port <= 65535:
        raise BankPipelineError(f"--port must be between 0 and 65535, got {port}")
    today = None
    if args.today:
        try:
            today = date.fromisoformat(args.today)
        except ValueError:
            raise BankPipelineError(f"--today must be a date as YYYY-MM-DD, got {args.today!r}") from None
        if not date(1900, 1, 1) <= today <= date(9998, 12, 31):  # the history before it must be dates too
            raise BankPipelineError(f"--today must be a date from 1900-01-01 to 9998-12-31, got {args.today!r}")
    faults = FaultConfig()
    if args.faults:
        text = args.faults
        if text.startswith("@"):
            try:
                text = Path(text[1:]).read_text(encoding="utf-8")
            except OSError as exc:
                raise BankPipelineError(f"--faults: cannot read {text[1:]}: {exc.strerror or exc}") from None
        try:
            changes = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BankPipelineError(f"--faults must be a JSON object or @file: {exc}") from None
        try:
            faults = faults.updated(changes)
        except BankPipelineError as exc:
            raise BankPipelineError(f"--faults: {exc}") from None
        except TypeError as exc:
            raise BankPipelineError(f"--faults: {exc}") from None
    state_file = Path(args.state_file) if args.state_file else home_dir() / "simulator-state.json"
    config = SimulatorConfig(
        seed=seed,
        today=today,
        faults=faults,
        state_file=state_file,
        client_id=SIMULATOR_CLIENT_ID,
        client_secret=SIMULATOR_CLIENT_SECRET,
    )
    return config, port


def run(args: argparse.Namespace) -> int:
    from bank_pipeline.simulator import serve_forever

    config, port = build_config(args)

    def ready(base_url: str) -> None:
        print(f"TrueLayer simulator on {base_url}", flush=True)
        print(f"  auth server: {base_url}   data API: {base_url}/data/v1", flush=True)
        print(f"  client id: {config.client_id}   client secret: {config.client_secret}", flush=True)
        print(f"  mock users: alice, bob, multi-N (N=1..1000)   state file: {config.state_file}", flush=True)
        print(f"  admin: {base_url}/_sim/ground_truth?user=alice, /_sim/stats, /_sim/faults", flush=True)
        print(f"  send a webhook: POST {base_url}/_sim/webhooks/send "
              '{"url": "http://127.0.0.1:8720/webhooks/truelayer", "user": "alice"}', flush=True)

    serve_forever(config, args.host, port, on_ready=ready)
    return 0
