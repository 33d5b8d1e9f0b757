"""`bank-pipeline demo`: the main job on embedded defaults."""

import os

from bank_pipeline.cli_args import int_between
from bank_pipeline.config import Settings


def _demo(args) -> int:
    from bank_pipeline.demo import format_summary, run_demo

    settings = Settings.from_env()
    summary = run_demo(settings, user=args.user, days=args.days, seed=args.seed)
    print(format_summary(settings, summary))
    print(
        "\nSee the runs, partitions and metadata in the Dagster UI (same data):\n"
        f"  DAGSTER_HOME={os.environ['DAGSTER_HOME']} .venv/bin/dg dev -w workspace.yaml   (or: make ui)\n"
        "and keep the simulator running for new imports:  .venv/bin/bank-pipeline simulator"
    )
    return 0 if all(run.success for run in summary.runs) else 1


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="start the simulator, connect a mock user, land and import its history through Dagster, summarise"
    )
    parser.add_argument("--user", default="alice", help="simulator mock user (default: alice)")
    parser.add_argument(
        "--days",
        type=int_between(1, 3650, "a day count"),
        default=None,
        help="days of history, ending today (default: BANK_PIPELINE_HISTORY_DAYS, 730, as connect)",
    )
    parser.add_argument(
        "--seed", type=int_between(0, 2**63 - 1, "a seed"), default=42, help="simulator seed (default: 42)"
    )
    parser.set_defaults(func=_demo)
