"""transfers between the user's own accounts, and the pairs the user rejected

Revision ID: 0005_transfers
Revises: 0004_enrich_queue
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_transfers"
down_revision = "0004_enrich_queue"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "transfers",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("debit_transaction_id", ID, nullable=False),
        sa.Column("credit_transaction_id", ID, nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("debit_previous", sa.JSON(), nullable=True),
        sa.Column("credit_previous", sa.JSON(), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["debit_transaction_id"], ["transactions.id"], name=op.f("fk_transfers_debit_transaction_id_transactions")
        ),
        sa.ForeignKeyConstraint(
            ["credit_transaction_id"], ["transactions.id"], name=op.f("fk_transfers_credit_transaction_id_transactions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfers")),
        sa.UniqueConstraint("debit_transaction_id", name=op.f("uq_transfers_debit_transaction_id")),
        sa.UniqueConstraint("credit_transaction_id", name=op.f("uq_transfers_credit_transaction_id")),
    )
    op.create_table(
        "transfer_rejections",
        sa.Column("debit_transaction_id", ID, nullable=False),
        sa.Column("credit_transaction_id", ID, nullable=False),
        sa.Column("transfer_id", ID, nullable=True),
        sa.Column("rejected_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["debit_transaction_id"],
            ["transactions.id"],
            name=op.f("fk_transfer_rejections_debit_transaction_id_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["credit_transaction_id"],
            ["transactions.id"],
            name=op.f("fk_transfer_rejections_credit_transaction_id_transactions"),
        ),
        sa.PrimaryKeyConstraint("debit_transaction_id", "credit_transaction_id", name=op.f("pk_transfer_rejections")),
    )


def downgrade() -> None:
    op.drop_table("transfer_rejections")
    op.drop_table("transfers")
