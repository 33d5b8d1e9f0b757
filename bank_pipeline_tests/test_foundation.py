"""The schema migrates idempotently on both backends; the category taxonomy is coherent."""

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from bank_pipeline.categories import CREDIT_CATEGORIES, DEFAULT_CATEGORIES, load_categories
from bank_pipeline.db import make_engine, migrate
from bank_pipeline.db.engine import alembic_config


def test_migrate_twice_is_a_no_op(db_url):
    engine = make_engine(db_url)
    migrate(engine)
    names = set(sa.inspect(engine).get_table_names())
    assert {"transactions", "connections", "accounts", "enrichments", "alembic_version"} <= names


    (head,) = ScriptDirectory.from_config(alembic_config(engine)).get_heads()  # one line of history
    with engine.connect() as conn:
        assert conn.execute(sa.text("select version_num from alembic_version")).scalar() == head


def test_income_categories_cannot_label_spending():
    assert "income" in CREDIT_CATEGORIES and "groceries" not in CREDIT_CATEGORIES
    assert DEFAULT_CATEGORIES["groceries"].essential and not DEFAULT_CATEGORIES["dining"].essential


def test_custom_category_file_replaces_the_list(tmp_path):
    path = tmp_path / "cats.json"
    path.write_text('{"food": {"essential": true, "subcategories": ["x"]}}')
    cats = load_categories(str(path))
    assert set(cats) == {"food", "other", "unknown"}
