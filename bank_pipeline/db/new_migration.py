"""Developer tool: write the next schema migration, stacked on the newest one, from what
`schema.py` has that the migrations do not yet create.

    python -m bank_pipeline.db.new_migration "transfer columns"
    # -> bank_pipeline/db/migrations/versions/0008_transfer_columns.py

Released databases are upgraded in place, so a schema change is always a new revision, never an
edit of an old one. Alembic compares on SQLite: read the file, and add what autogenerate cannot
see (data to fill, PostgreSQL-only details) before committing it.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from alembic import command

from bank_pipeline.db.engine import alembic_config, head_revision, make_engine, migrate


def next_revision_id(head: str, message: str) -> str:
    """`0007_recurring_payments` + "Transfer columns" -> `0008_transfer_columns`."""
    number = int(head.split("_", 1)[0]) + 1
    slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")
    return f"{number:04d}_{slug}" if slug else f"{number:04d}"


def write_next_migration(message: str, version_path: Path | None = None) -> Path:
    """Autogenerate the next revision into `version_path` (the package's versions/ by default)."""
    head = head_revision()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'head.db'}")
        migrate(engine)
        cfg = alembic_config(engine)
        cfg.set_main_option("file_template", "%%(rev)s")
        if version_path is not None:
            cfg.set_main_option("version_locations", f"{cfg.get_main_option('script_location')}/versions {version_path}")
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            script = command.revision(
                cfg,
                message=message,
                autogenerate=True,
                rev_id=next_revision_id(head, message),
                head=head,
                version_path=str(version_path) if version_path is not None else None,
            )
        engine.dispose()
    return Path(script.path)


def main(argv: list[str] | None = None) -> int:
    message = " ".join(sys.argv[1:] if argv is None else argv).strip()
    if not message:
        print('usage: python -m bank_pipeline.db.new_migration "what the migration adds"', file=sys.stderr)
        return 2
    print(write_next_migration(message))
    return 0


if __name__ == "__main__":
    sys.exit(main())
