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
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("panda_id", sa.BigInteger(), nullable=True))
        batch.create_index("ix_jobs_panda_id", ["panda_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_panda_id")
        batch.drop_column("panda_id")
