"""monitor: who submitted what (submissions, PanDA tasks), task -> submission, indexes of the
workload, fast path and brokerage pages (issue 16)

Revision ID: 0009
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = [
    ("template_submissions", sa.Column("username", sa.String(length=100), nullable=False,
                                       server_default="")),
    ("template_submissions", sa.Column("priority", sa.Integer(), nullable=True)),
    ("panda_tasks", sa.Column("username", sa.String(length=100), nullable=False,
                              server_default="")),
    ("panda_tasks", sa.Column("campaign", sa.String(length=100), nullable=False,
                              server_default="")),
    ("panda_tasks", sa.Column("submission_id", sa.Integer(), nullable=True)),
]

INDEXES = [
    ("ix_submissions_user", "template_submissions", ["username"]),
    ("ix_submissions_created", "template_submissions", ["created_at"]),
    ("ix_step_runs_submission_step", "template_step_runs", ["submission_id", "step"]),
    ("ix_panda_tasks_user", "panda_tasks", ["username"]),
    ("ix_panda_tasks_campaign", "panda_tasks", ["campaign"]),
    ("ix_panda_tasks_submission", "panda_tasks", ["submission_id"]),
    ("ix_panda_tasks_status", "panda_tasks", ["status"]),
    ("ix_panda_tasks_submitted", "panda_tasks", ["submitted_at"]),
    ("ix_panda_jobs_status", "panda_jobs", ["status"]),
    ("ix_decisions_time", "brokerage_decisions", ["decided_at"]),
    ("ix_usage_user_ended", "resource_usage", ["username", "ended_at"]),
    ("ix_tf_slices_run_completed", "tf_slices", ["run_number", "completed_at"]),
]


def upgrade() -> None:
    for table, column in COLUMNS:
        op.add_column(table, column)
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    for table, column in reversed(COLUMNS):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column.name)
