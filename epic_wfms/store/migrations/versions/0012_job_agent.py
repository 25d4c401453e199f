"""jobs.agent: the agent whose executor runs the job (NULL: an embedded installation's)

With several instances of a role (competing consumers), an instance recovers only the jobs
of instances that are gone, never those of a live peer (streaming/ownership.py).

Revision ID: 0012
Revises: 0010 (chained on 0011 when that lands: the lead rechains)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("agent", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("agent")
