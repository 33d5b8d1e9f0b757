"""`bank-pipeline partitions sync` and `bank-pipeline import`: drive Dagster from the shell."""

import datetime as dt

import sqlalchemy as sa

from bank_pipeline.config import Settings
from bank_pipeline.errors import BankPipelineError


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise BankPipelineError(f"not a date (YYYY-MM-DD): {value!r}") from None


def _active_account_keys(settings: Settings, only: list[str] | None) -> list[str]:
    from bank_pipeline.db import make_engine, migrate
    from bank_pipeline.db.schema import accounts

    engine = make_engine(settings.database_url)
    migrate(engine)
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
    import dagster as dg

    from bank_pipeline.orchestration.partitions import sync_account_partitions
    from bank_pipeline.orchestration.runner import ensure_dagster_home

    settings = Settings.from_env()
    keys = _active_account_keys(settings, None)
    ensure_dagster_home(settings)
    with dg.DagsterInstance.get() as instance:
        new = sync_account_partitions(instance, keys)
    print(f"account partitions: {len(keys)} ({len(new)} new: {', '.join(new) or '-'})")
    return 0


def _list(args) -> int:
    print("\n".join(_active_account_keys(Settings.from_env(), None)))
    return 0


def _import(args) -> int:
    import dagster as dg

    from bank_pipeline.orchestration.runner import ensure_dagster_home, run_imports

    settings = Settings.from_env()
    first, last = _date(args.date_from), _date(args.date_to)
    if last < first:
        raise BankPipelineError(f"--from {first} is after --to {last}")
    keys = _active_account_keys(settings, args.account)
    ensure_dagster_home(settings)
    with dg.DagsterInstance.get() as instance:
        outcomes = run_imports(
            instance, settings, keys, first, last, extra_tags={"bank_pipeline/trigger": "cli"}, progress=print
        )
    return 0 if all(r.success for r in outcomes) else 1


def register(subparsers) -> None:
    partitions = subparsers.add_parser("partitions", help="Dagster account partitions")
    partitions_sub = partitions.add_subparsers(dest="partitions_command", metavar="ACTION")
    partitions_sub.required = True
    sync = partitions_sub.add_parser("sync", help="register every connected account as an `account` partition")
    sync.set_defaults(func=_sync)
    listing = partitions_sub.add_parser("list", help="print the connected accounts' partition keys, one a line")
    listing.set_defaults(func=_list)

    run = subparsers.add_parser("import", help="import a date range through Dagster (one run per account)")
    run.add_argument("--from", dest="date_from", required=True, help="first day, YYYY-MM-DD")
    run.add_argument("--to", dest="date_to", required=True, help="last day, YYYY-MM-DD (inclusive)")
    run.add_argument("--account", action="append", help="account key (repeatable; default: all)")
    run.set_defaults(func=_import)
