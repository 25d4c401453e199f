"""template_submissions.idds_request_id: the iDDS request a submission to the idds target
became (``epic-wfms idds status <id>``); NULL for other targets, dry runs and before this
revision.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ALTER TABLE ADD COLUMN (SQLite has it), as 0011 and 0012
    op.add_column("template_submissions",
                  sa.Column("idds_request_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("template_submissions", "idds_request_id")
