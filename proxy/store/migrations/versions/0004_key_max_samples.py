"""A key's cap on samples to select from (``best_of``, ``vote``), as ``max_rounds`` caps
refinement rounds; NULL: no cap beyond the policy's.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("max_samples", sa.Integer))


def downgrade() -> None:
    op.drop_column("api_keys", "max_samples")
