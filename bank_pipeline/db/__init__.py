"""Application database: schema, engine and migrations."""

from bank_pipeline.db.engine import (
    current_revision,
    head_revision,
    make_engine,
    migrate,
    open_database,
    require_current_schema,
    utcnow,
    write_transaction,
)

__all__ = [
    "current_revision",
    "head_revision",
    "make_engine",
    "migrate",
    "open_database",
    "require_current_schema",
    "utcnow",
    "write_transaction",
]
