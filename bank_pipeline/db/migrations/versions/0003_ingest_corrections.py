"""ingest: converging quarantine, corrections history, row flags, stale pending rows

Revision ID: 0003_ingest
Revises: 0002_webhooks
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_ingest"
down_revision = "0002_webhooks"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("quarantine", sa.Column("row_key", sa.String(128), nullable=True))
    op.add_column("quarantine", sa.Column("seen_count", sa.Integer(), server_default="1", nullable=False))
    op.add_column("quarantine", sa.Column("last_seen_at", Ts, nullable=True))
    op.create_index("uq_quarantine_account_row_key", "quarantine", ["account_id", "row_key"], unique=True)
    op.create_table(
        "quarantine_sightings",
        sa.Column("raw_transaction_id", Id, nullable=False),
        sa.Column("quarantine_id", Id, nullable=False),
        sa.ForeignKeyConstraint(
            ["raw_transaction_id"], ["raw_transactions.id"],
            name="fk_quarantine_sightings_raw_transaction_id_raw_transactions",
        ),
        sa.ForeignKeyConstraint(
            ["quarantine_id"], ["quarantine.id"], name="fk_quarantine_sightings_quarantine_id_quarantine"
        ),
        sa.PrimaryKeyConstraint("raw_transaction_id", name="pk_quarantine_sightings"),
    )
    op.create_index("ix_quarantine_sightings_quarantine", "quarantine_sightings", ["quarantine_id"])
    op.add_column("staged_transactions", sa.Column("flags", sa.String(64), nullable=True))
    op.add_column("transactions", sa.Column("flags", sa.String(64), nullable=True))
    op.add_column("transactions", sa.Column("corrected_at", Ts, nullable=True))
    op.add_column("pending_transactions", sa.Column("stale", sa.Boolean(), server_default="0", nullable=False))
    op.create_table(
        "transaction_history",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("transaction_id", Id, nullable=False),
        sa.Column("booking_date", sa.Date(), nullable=False),
        sa.Column("booked_at", Ts, nullable=False),
        sa.Column("amount", sa.Numeric(18, 4), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("merchant_name", sa.Text(), nullable=True),
        sa.Column("raw_transaction_id", Id, nullable=True),
        sa.Column("replaced_by_raw_transaction_id", Id, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("replaced_at", Ts, nullable=False),
        sa.ForeignKeyConstraint(
            ["transaction_id"], ["transactions.id"], name="fk_transaction_history_transaction_id_transactions"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_transaction_history"),
        sa.UniqueConstraint("transaction_id", "replaced_by_raw_transaction_id", name="uq_transaction_history_version"),
    )


def downgrade() -> None:
    op.drop_table("transaction_history")
    with op.batch_alter_table("pending_transactions") as batch:
        batch.drop_column("stale")
    with op.batch_alter_table("transactions") as batch:
        batch.drop_column("corrected_at")
        batch.drop_column("flags")
    with op.batch_alter_table("staged_transactions") as batch:
        batch.drop_column("flags")
    op.drop_index("ix_quarantine_sightings_quarantine", table_name="quarantine_sightings")
    op.drop_table("quarantine_sightings")
    op.drop_index("uq_quarantine_account_row_key", table_name="quarantine")
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_column("last_seen_at")
        batch.drop_column("seen_count")
        batch.drop_column("row_key")
