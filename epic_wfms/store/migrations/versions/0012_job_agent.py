"""jobs.agent, stfs.claimed_by, merges.agent: which agent runs a job, claimed an STF for
processing, started a merge (NULL: an installation without agents, or before this revision)

With several instances of a role (competing consumers), an instance recovers only the work
of instances that are gone, never that of a live peer (streaming/ownership.py); a claim
whose job was never submitted still names its holder.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("agent", sa.String(length=100), nullable=True))
    with op.batch_alter_table("stfs") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(length=100), nullable=True))
    with op.batch_alter_table("merges") as batch:
        batch.add_column(sa.Column("agent", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("merges") as batch:
        batch.drop_column("agent")
    with op.batch_alter_table("stfs") as batch:
        batch.drop_column("claimed_by")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("agent")
