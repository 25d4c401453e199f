"""monitor: who submitted what (submissions, PanDA tasks), task -> submission, hourly resource
usage, indexes of the workload, fast path and brokerage pages (issue 16)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
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
    ("ix_usage_hourly_user", "resource_usage_hourly", ["username", "hour"]),
]


def upgrade() -> None:
    for table, column in COLUMNS:
        op.add_column(table, column)
    op.create_table(
        "resource_usage_hourly",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("site", sa.String(length=40), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("activity", sa.String(length=40), nullable=False),
        sa.Column("workflow", sa.String(length=100), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("core_seconds", sa.Float(), nullable=False),
        sa.Column("gpu_seconds", sa.Float(), nullable=False),
        sa.Column("jobs", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "site", "queue", "activity", "workflow", "username",
                                "status"),
    )
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_table("resource_usage_hourly")
    for table, column in reversed(COLUMNS):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column.name)
