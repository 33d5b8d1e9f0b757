"""bank_mandates (direct debits and standing orders listed at connect time) and recurring_payments

Revision ID: 0007_recurring_payments
Revises: 0006_monthly_spending
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_recurring_payments"
down_revision = "0006_monthly_spending"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Amount = sa.Numeric(18, 4)


def upgrade() -> None:
    op.create_table(
        "bank_mandates",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("account_id", Id, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("mandate_key", sa.String(length=256), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("frequency", sa.String(length=64), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("next_payment_date", sa.Date(), nullable=True),
        sa.Column("next_payment_amount", Amount, nullable=True),
        sa.Column("previous_payment_date", sa.Date(), nullable=True),
        sa.Column("previous_payment_amount", Amount, nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_bank_mandates_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_mandates")),
        sa.UniqueConstraint("account_id", "kind", "mandate_key", name="uq_bank_mandates_account_kind_key"),
    )
    op.create_table(
        "recurring_payments",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("pattern_key", sa.String(length=512), nullable=False),
        sa.Column("account_id", Id, nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("payee", sa.Text(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("cadence", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("first_date", sa.Date(), nullable=False),
        sa.Column("last_date", sa.Date(), nullable=False),
        sa.Column("last_amount", Amount, nullable=False),
        sa.Column("next_date", sa.Date(), nullable=False),
        sa.Column("next_amount", Amount, nullable=False),
        sa.Column("variable_amount", sa.Boolean(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("transaction_ids", sa.JSON(), nullable=False),
        sa.Column("dismissed", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("dismissed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_recurring_payments_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recurring_payments")),
        sa.UniqueConstraint("pattern_key", name=op.f("uq_recurring_payments_pattern_key")),
    )


def downgrade() -> None:
    op.drop_table("recurring_payments")
    op.drop_table("bank_mandates")
