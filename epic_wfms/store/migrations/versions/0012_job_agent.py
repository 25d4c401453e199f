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
    # plain ALTER TABLE ADD COLUMN (SQLite has it): a batch would recreate the tables, which
    # SQLite refuses with foreign keys enforced while rows point to them (stfs -> merges)
    op.add_column("jobs", sa.Column("agent", sa.String(length=100), nullable=True))
    op.add_column("stfs", sa.Column("claimed_by", sa.String(length=100), nullable=True))
    op.add_column("merges", sa.Column("agent", sa.String(length=100), nullable=True))


def downgrade() -> None:  # ALTER TABLE DROP COLUMN: SQLite has it since 3.35 (2021)
    op.drop_column("merges", "agent")
    op.drop_column("stfs", "claimed_by")
    op.drop_column("jobs", "agent")
