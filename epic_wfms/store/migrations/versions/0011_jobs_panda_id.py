"""jobs: the PanDA job of an attempt (jobs.panda_id), when the job ran on PanDA

A job record is one attempt wherever it runs. On the PanDA backend it is also a PanDA job:
``panda_id`` is PanDA's ``PandaID`` (unique, indexed: read-back finds the record by it), NULL
for a job of the local worker slots.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ALTER TABLE ADD COLUMN (SQLite has it): a batch would recreate jobs, which SQLite
    # refuses with foreign keys enforced while provenance rows point to it
    op.add_column("jobs", sa.Column("panda_id", sa.BigInteger(), nullable=True))
    op.create_index("ix_jobs_panda_id", "jobs", ["panda_id"], unique=True)


def downgrade() -> None:  # ALTER TABLE DROP COLUMN: SQLite has it since 3.35 (2021)
    op.drop_index("ix_jobs_panda_id", "jobs")
    op.drop_column("jobs", "panda_id")
