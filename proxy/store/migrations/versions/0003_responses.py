"""Stored responses of the Responses API (``store: true``): what ``GET /v1/responses/{id}``
returns and what ``previous_response_id`` continues, for every proxy sharing the store.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("key_id", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("input_items", sa.Text, nullable=False),
    )
    op.create_index("responses_by_time", "responses", ["created_at"])


def downgrade() -> None:
    op.drop_table("responses")
