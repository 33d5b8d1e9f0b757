"""`bank-pipeline db upgrade`: bring the application database's schema to the code's revision.

The deploy step (and `make` targets) for the database; every other command that opens the
database upgrades it at start too. Dagster's resources never migrate: they ask for this.
"""

from __future__ import annotations

import argparse

from bank_pipeline.cli_args import add_actions
from bank_pipeline.config import Settings


def _upgrade(args: argparse.Namespace) -> int:
    from bank_pipeline.db import current_revision, make_engine, migrate

    settings = Settings.from_env()
    engine = make_engine(settings.database_url)
    try:
        before = current_revision(engine)
        migrate(engine)
        after = current_revision(engine)
    finally:
        engine.dispose()
    where = engine.url.render_as_string(hide_password=True)
    if before == after:
        print(f"{where}: schema already at {after}")
    else:
        print(f"{where}: schema upgraded from {before or 'nothing'} to {after}")
    return 0


def register(subparsers) -> None:
    db = subparsers.add_parser("db", help="the application database")
    actions = add_actions(db)
    upgrade = actions.add_parser(
        "upgrade", help="migrate the schema to this code's revision (BANK_PIPELINE_DATABASE_URL)"
    )
    upgrade.set_defaults(func=_upgrade)
