"""Developer tool: regenerate the (still unreleased) initial migration from schema.py.

    python -m bank_pipeline.db.regenerate_migration
"""

import tempfile
from pathlib import Path

from alembic import command

from bank_pipeline.db.engine import MIGRATIONS_DIR, alembic_config, make_engine


def main() -> None:
    initial = MIGRATIONS_DIR / "versions" / "0001_initial_schema.py"
    initial.unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{Path(tempfile.mkdtemp()) / 'empty.db'}")
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")


if __name__ == "__main__":
    main()
