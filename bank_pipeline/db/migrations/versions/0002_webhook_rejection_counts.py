"""webhooks: rejections counted per day, status, reason and source bucket (bounded storage)

The old table held one row per refused request (unbounded under a flood, and its reason could
quote the request). Existing rows are folded into counters: the reason is cut to its fixed phrase
(the text before the first ':'), escaped, and counted under source bucket 0 ("unknown" sender).

Revision ID: 0002_webhooks
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_webhooks"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Ts = sa.DateTime(timezone=True)


def _escape(text: str, limit: int = 64) -> str:
    return repr(text[:limit])[1:-1].encode("ascii", "backslashreplace").decode("ascii")[:limit]


def upgrade() -> None:
    conn = op.get_bind()
    old = sa.table(
        "webhook_rejections",
        sa.column("received_at", Ts),
        sa.column("status_code", sa.Integer),
        sa.column("reason", sa.Text),
        sa.column("body_sha256", sa.String),
    )
    counters: dict[tuple, dict] = {}
    for received_at, status_code, reason, body_sha256 in conn.execute(
        sa.select(old.c.received_at, old.c.status_code, old.c.reason, old.c.body_sha256).order_by(
            old.c.received_at
        )
    ):
        phrase = _escape((reason or "").split(":", 1)[0].strip() or "unknown")
        key = (received_at.date(), status_code, phrase)
        row = counters.setdefault(
            key,
            {"day": key[0], "status_code": status_code, "reason": phrase, "source_bucket": 0, "count": 0,
             "first_seen": received_at, "sample_source": "unknown"},
        )  # fmt: skip
        row["count"] += 1
        row["last_seen"] = received_at
        row["last_body_sha256"] = body_sha256

    op.drop_table("webhook_rejections")
    new = op.create_table(
        "webhook_rejections",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("source_bucket", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("first_seen", Ts, nullable=False),
        sa.Column("last_seen", Ts, nullable=False),
        sa.Column("sample_source", sa.String(length=64), nullable=True),
        sa.Column("sample_detail", sa.String(length=300), nullable=True),
        sa.Column("last_body_sha256", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_rejections"),
        sa.UniqueConstraint(
            "day", "status_code", "reason", "source_bucket", name="uq_webhook_rejections_key"
        ),
    )
    if counters:
        op.bulk_insert(new, list(counters.values()))


def downgrade() -> None:
    op.drop_table("webhook_rejections")
    op.create_table(
        "webhook_rejections",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("received_at", Ts, nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_rejections"),
    )
