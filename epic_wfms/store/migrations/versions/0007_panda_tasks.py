"""PanDA tasks and jobs (issue 9)

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "panda_tasks",
        sa.Column("jedi_task_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("server", sa.String(length=255), nullable=False),
        sa.Column("task_name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("run_number", sa.Integer(), nullable=True),
        sa.Column("site", sa.String(length=40), nullable=True),
        sa.Column("input_dataset", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jedi_task_id"),
    )
    op.create_table(
        "panda_jobs",
        sa.Column("panda_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("jedi_task_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("site", sa.String(length=128), nullable=True),
        sa.Column("attempt_nr", sa.Integer(), nullable=False),
        sa.Column("input_files", sa.JSON(), nullable=False),
        sa.Column("stf_filename", sa.String(length=255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["jedi_task_id"], ["panda_tasks.jedi_task_id"]),
        sa.PrimaryKeyConstraint("panda_id"),
    )
    op.create_index("ix_panda_jobs_task", "panda_jobs", ["jedi_task_id"])
    op.create_index(op.f("ix_panda_jobs_stf_filename"), "panda_jobs", ["stf_filename"])


def downgrade() -> None:
    op.drop_index(op.f("ix_panda_jobs_stf_filename"), table_name="panda_jobs")
    op.drop_index("ix_panda_jobs_task", table_name="panda_jobs")
    op.drop_table("panda_jobs")
    op.drop_table("panda_tasks")
