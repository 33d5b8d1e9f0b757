"""`bank-pipeline partitions sync` and `bank-pipeline import`: drive Dagster from the shell."""

import datetime as dt
import sys

import sqlalchemy as sa

from bank_pipeline.cli_args import add_account_filter, add_actions, add_date_range
from bank_pipeline.config import Settings
from bank_pipeline.errors import BankPipelineError


def _active_account_keys(settings: Settings, only: list[str] | None) -> list[str]:
    from bank_pipeline.db import open_database
    from bank_pipeline.db.schema import accounts

    engine = open_database(settings.database_url)
    with engine.connect() as conn:
        keys = list(conn.execute(sa.select(accounts.c.account_key).where(accounts.c.active.is_(True))).scalars())
    if only:
        unknown = sorted(set(only) - set(keys))
        if unknown:
            raise BankPipelineError(f"unknown account key(s) {unknown}; known: {sorted(keys)} (see `bank-pipeline status`)")
        keys = only
    if not keys:
        raise BankPipelineError("no connected accounts: run `bank-pipeline connect` first")
    return sorted(keys)


def _sync(args) -> int:
    from bank_pipeline.orchestration.partitions import sync_account_partitions

    settings = Settings.from_env()
    keys = _active_account_keys(settings, None)
    with dagster_instance(settings) as instance:
        new = sync_account_partitions(instance, keys)
    print(f"account partitions: {len(keys)} ({len(new)} new: {', '.join(new) or '-'})")
    return 0


def _list(args) -> int:
    print("\n".join(_active_account_keys(Settings.from_env(), None)))
    return 0


def check_importable(settings: Settings, first: dt.date, last: dt.date) -> None:
    """Refuse ranges no partition exists for: inverted, before the partitions' start, in the future."""
    from bank_pipeline import clock

    if last < first:
        raise BankPipelineError(f"--from {first} is after --to {last}")
    start = dt.date.fromisoformat(settings.start_date)
    if first < start:
        raise BankPipelineError(
            f"--from {first} is before the first partition {start} (BANK_PIPELINE_START_DATE)"
        )
    today = clock.today_in(settings.timezone)
    if last > today:
        raise BankPipelineError(f"--to {last} is in the future: the last day that can be imported is today, {today}")


def report_runs(outcomes) -> int:
    """One line per failed run (no traceback) and a summary; exit status 1 if any run failed."""
    failed = [o for o in outcomes if not o.success]
    for outcome in failed:
        print(f"error: {outcome.account_key} {outcome.first}..{outcome.last} (run {outcome.run_id[:8]}): "
              f"{outcome.error}", file=sys.stderr)
    inserted = sum(int(o.metadata.get("loaded_transactions", {}).get("inserted", 0) or 0) for o in outcomes)
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} run(s) succeeded; {inserted} new transactions")
    if failed:
        print("The failed runs' partitions show as failed in the Dagster UI; re-run them (or re-execute the "
              "backfill from failure) after the reason above is gone.")
    return 1 if failed else 0


def _import(args) -> int:
    from bank_pipeline.orchestration.partitions import FETCH_MODE_TAG
    from bank_pipeline.runner import run_imports

    settings = Settings.from_env()
    first, last = args.date_from, args.date_to
    check_importable(settings, first, last)
    keys = _active_account_keys(settings, args.accounts)
    tags = {"bank_pipeline/trigger": "cli"}
    if args.refetch:
        tags[FETCH_MODE_TAG] = "refetch"
    with dagster_instance(settings) as instance:
        outcomes = run_imports(
            instance, settings, keys, first, last, extra_tags=tags, progress=print, console_log_level="CRITICAL",
            analytics=True,
        )
    return report_runs(outcomes)


def dagster_instance(settings: Settings):
    import dagster as dg

    from bank_pipeline.runner import ensure_dagster_home

    ensure_dagster_home(settings)
    return dg.DagsterInstance.get()


def register(subparsers) -> None:
    partitions = subparsers.add_parser("partitions", help="Dagster account partitions")
    partitions_sub = add_actions(partitions)
    sync = partitions_sub.add_parser("sync", help="register every connected account as an `account` partition")
    sync.set_defaults(func=_sync)
    listing = partitions_sub.add_parser("list", help="print the connected accounts' partition keys, one a line")
    listing.set_defaults(func=_list)

    run = subparsers.add_parser(
        "import", help="import a date range through Dagster (runs of one account and at most one bank window)"
    )
    add_date_range(run, required=True)
    add_account_filter(run)
    run.add_argument(
        "--refetch", action="store_true", help="ask the bank again for days that already landed (spends calls)"
    )
    run.set_defaults(func=_import)
