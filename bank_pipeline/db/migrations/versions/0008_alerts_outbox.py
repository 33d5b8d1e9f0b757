"""alerts: one row per cause of an alert to the person, with its delivery state per channel

Revision ID: 0008_alerts_outbox
Revises: 0007_recurring_payments
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_alerts_outbox"
down_revision = "0007_recurring_payments"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("cause", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("delivered_to", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("cause", name=op.f("uq_alerts_cause")),
    )
    op.create_index("ix_alerts_sent_at", "alerts", ["sent_at"])


def downgrade() -> None:
    op.drop_index("ix_alerts_sent_at", table_name="alerts")
    op.drop_table("alerts")
