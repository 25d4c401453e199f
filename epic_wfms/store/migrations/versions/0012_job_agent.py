"""jobs.agent: the agent whose executor runs the job (NULL: an embedded installation's)

With several instances of a role (competing consumers), an instance recovers only the jobs
of instances that are gone, never those of a live peer (streaming/ownership.py).

Revision ID: 0012
Revises: 0014 (main had 0014 after 0010; rechain if 0011 or 0013 land)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("agent", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("agent")
