"""The schema migrates idempotently on both backends, by the database's owner (`bank-pipeline db
upgrade`, CLI commands), never by Dagster's resources; the category taxonomy is coherent."""

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from bank_pipeline.categories import CREDIT_CATEGORIES, DEFAULT_CATEGORIES, load_categories
from bank_pipeline.cli import main
from bank_pipeline.db import current_revision, head_revision, make_engine, migrate
from bank_pipeline.db.engine import alembic_config
from bank_pipeline.errors import BankPipelineError


def test_migrate_twice_is_a_no_op(db_url):
    engine = make_engine(db_url)
    migrate(engine)
    names = set(sa.inspect(engine).get_table_names())
    assert {"transactions", "connections", "accounts", "enrichments", "alembic_version"} <= names


    (head,) = ScriptDirectory.from_config(alembic_config(engine)).get_heads()  # one line of history
    with engine.connect() as conn:
        assert conn.execute(sa.text("select version_num from alembic_version")).scalar() == head


def test_db_upgrade_migrates_and_the_dagster_resource_only_checks(tmp_path, monkeypatch, capsys):
    from bank_pipeline.orchestration.resources import AppDatabase

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    engine = make_engine(url)
    with pytest.raises(BankPipelineError, match=r"has no schema yet.*run `bank-pipeline db upgrade`"):
        AppDatabase(url=url).get_engine()  # what an asset or a sensor tick does first
    assert current_revision(engine) is None  # …and it did not migrate

    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 0
    assert f"schema upgraded from nothing to {head_revision()}" in capsys.readouterr().out
    assert current_revision(engine) == head_revision()
    assert main(["db", "upgrade"]) == 0
    assert f"schema already at {head_revision()}" in capsys.readouterr().out
    assert current_revision(AppDatabase(url=url).get_engine()) == head_revision()
    engine.dispose()


def test_a_new_migration_stacks_on_the_newest_and_schema_py_has_nothing_unmigrated(tmp_path):
    """`python -m bank_pipeline.db.new_migration` writes the next revision, never over an old one;
    generated now it is empty, so every table and column of schema.py has its migration."""
    from bank_pipeline.db.new_migration import write_next_migration

    head = head_revision()
    path = write_next_migration("Nothing new", tmp_path)

    assert path.parent == tmp_path and path.name == f"{int(head.split('_')[0]) + 1:04d}_nothing_new.py"
    text = path.read_text()
    assert f"down_revision = {head!r}" in text
    assert "op." not in text, f"schema.py differs from the migrations:\n{text}"


def test_income_categories_cannot_label_spending():
    assert "income" in CREDIT_CATEGORIES and "groceries" not in CREDIT_CATEGORIES
    assert DEFAULT_CATEGORIES["groceries"].essential and not DEFAULT_CATEGORIES["dining"].essential


def test_custom_category_file_replaces_the_list(tmp_path):
    path = tmp_path / "cats.json"
    path.write_text('{"food": {"essential": true, "subcategories": ["x"]}}')
    cats = load_categories(str(path))
    assert set(cats) == {"food", "other", "unknown"}
