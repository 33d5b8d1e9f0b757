"""Alembic environment: runs on the connection handed over by `bank_pipeline.db.migrate`."""

from alembic import context
from sqlalchemy import create_engine

from bank_pipeline.db.schema import metadata

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # `alembic` command line: BANK_PIPELINE_DATABASE_URL or the default
        from bank_pipeline.config import Settings

        engine = create_engine(Settings.from_env().database_url)
        with engine.begin() as conn:
            context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
            context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
