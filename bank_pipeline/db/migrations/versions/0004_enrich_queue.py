"""enrichment queue: provisional answers waiting for a model batch

Revision ID: 0004_enrich_queue
Revises: 0003_ingest
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_enrich_queue"
down_revision = "0003_ingest"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "enrichment_queue",
        sa.Column("transaction_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("cache_key", sa.String(length=512), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("batch_id", sa.String(length=128), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_enrichment_queue_transaction_id_transactions"),
        ),
        sa.PrimaryKeyConstraint("transaction_id", name=op.f("pk_enrichment_queue")),
    )
    op.create_index("ix_enrichment_queue_batch", "enrichment_queue", ["batch_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_enrichment_queue_batch", table_name="enrichment_queue")
    op.drop_table("enrichment_queue")
