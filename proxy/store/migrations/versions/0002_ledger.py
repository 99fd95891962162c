"""The spend ledger: one row per request, never its text.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "ledger",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("key_id", sa.Text),
        sa.Column("model", sa.Text),
        sa.Column("task", sa.Text),
        sa.Column("rounds", sa.Integer),
        sa.Column("stop_reason", sa.Text),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("reference_cost_usd", sa.Float),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("fallbacks", sa.Integer, nullable=False),
        sa.Column("stream", sa.Boolean, nullable=False),
    )
    op.create_index("ledger_by_time", "ledger", ["time"])
    op.create_index("ledger_by_key", "ledger", ["key_id", "time"])


def downgrade() -> None:
    op.drop_table("ledger")
