"""Application database: schema, engine and migrations."""

from bank_pipeline.db.engine import make_engine, migrate, utcnow, write_transaction

__all__ = ["make_engine", "migrate", "utcnow", "write_transaction"]
