"""Engines for SQLite (embedded default) and PostgreSQL, and schema upgrades through Alembic."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from bank_pipeline import clock
from bank_pipeline.errors import BankPipelineError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def utcnow() -> dt.datetime:
    """Timezone-aware now, from the pipeline's one clock (`bank_pipeline.clock`)."""
    return clock.now()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets Dagster runs read while another writes; busy_timeout waits instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# The databases and drivers the pipeline is built and tested on (a synchronous driver each).
SUPPORTED_DRIVERS = {"sqlite": ("pysqlite",), "postgresql": ("psycopg", "psycopg2")}
URL_HINT = "set BANK_PIPELINE_DATABASE_URL to sqlite:///PATH or postgresql://USER@HOST/DATABASE"


def database_url(url: str) -> URL:
    """`url` parsed and checked: SQLite or PostgreSQL on a driver we support (postgres:// is a
    shorthand). Anything else is one line naming the setting, not a driver's import traceback."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise BankPipelineError(f"the database URL is not a URL SQLAlchemy can read: {URL_HINT}") from None
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if driver not in SUPPORTED_DRIVERS.get(backend, ()):
        raise BankPipelineError(
            f"the database URL {parsed.render_as_string(hide_password=True)[:200]!r} names "
            f"{parsed.drivername!r}, which this pipeline does not support: {URL_HINT}"
        )
    return parsed


def _sqlite_folder(database: str) -> None:
    """The SQLite file's folder must exist: only BANK_PIPELINE_HOME, the default's place, is
    created. A typo in a path would otherwise create an empty database and look like data loss."""
    from bank_pipeline.config import home_dir

    folder = Path(database).expanduser().resolve().parent
    if folder.is_dir():
        return
    if folder == home_dir():
        folder.mkdir(parents=True, exist_ok=True)
        return
    raise BankPipelineError(
        f"the folder {str(folder)[:200]!r} of the SQLite database does not exist: create it, or "
        "fix BANK_PIPELINE_DATABASE_URL"
    )


def make_engine(url: str) -> Engine:
    """An engine for `url` (checked by `database_url`). Creates BANK_PIPELINE_HOME for the default
    SQLite file, no other folder."""
    parsed = database_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            _sqlite_folder(parsed.database)
        engine = create_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection_engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent). Run by what owns the database: the
    CLI commands at start, `bank-pipeline db upgrade` (deploys, `make` targets), test fixtures —
    never by the Dagster resources (`require_current_schema` is their check)."""
    with engine.begin() as connection:
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def open_database(url: str) -> Engine:
    """An engine for `url` with the schema brought up to date: how a CLI command opens the database."""
    engine = make_engine(url)
    migrate(engine)
    return engine


def head_revision() -> str:
    """The newest schema revision the code knows."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision; None for a database never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def require_current_schema(engine: Engine) -> None:
    """Fail with a one-line instruction unless the database is at the code's schema revision."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        where = engine.url.render_as_string(hide_password=True)
        state = f"is at schema revision {current}" if current else "has no schema yet"
        raise BankPipelineError(
            f"the application database {where} {state}, this code needs {head}: "
            "run `bank-pipeline db upgrade`"
        )


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that writes. On SQLite it takes the write lock up front (BEGIN IMMEDIATE), so
    concurrent writers queue on busy_timeout instead of failing to upgrade a read snapshot; on
    PostgreSQL it is an ordinary transaction (callers lock rows with `.with_for_update()`)."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
        else:
            with conn.begin():
                yield conn
