"""monthly_spending: income, spending and net per account × month × category × currency

Revision ID: 0006_monthly_spending
Revises: 0005_transfers
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_monthly_spending"
down_revision = "0005_transfers"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Amount = sa.Numeric(18, 4)


def upgrade() -> None:
    op.create_table(
        "monthly_spending",
        sa.Column("account_id", Id, nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("income", Amount, nullable=False),
        sa.Column("spending", Amount, nullable=False),
        sa.Column("net", Amount, nullable=False),
        sa.Column("transactions", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_monthly_spending_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "month", "category", "currency", name=op.f("pk_monthly_spending")),
    )
    op.create_index("ix_monthly_spending_month", "monthly_spending", ["month"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_monthly_spending_month", table_name="monthly_spending")
    op.drop_table("monthly_spending")
