"""monitor: operator commands, REST usage, indexes for current-state pages

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 14:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

INDEXES = [
    ("ix_stf_processed_at", "stfs", ["processed_at"]),
    ("ix_stf_processing_site", "stfs", ["processing_status", "site"]),
    ("ix_stf_received_at", "stfs", ["received_at"]),
    ("ix_stf_run_archive", "stfs", ["run_number", "archive_status"]),
    ("ix_jobs_site_status", "jobs", ["site", "status"]),
    ("ix_jobs_run_kind", "jobs", ["run_number", "kind"]),
    ("ix_jobs_ended_at", "jobs", ["ended_at"]),
    ("ix_issues_open", "integrity_issues", ["resolved_at", "run_number"]),
    ("ix_transitions_run", "state_transitions", ["run_number"]),
    ("ix_gate_events_run", "gate_events", ["run_number"]),
    ("ix_runs_status", "runs", ["status"]),
]


def upgrade() -> None:
    op.create_table(
        "operator_commands",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target_kind", sa.String(length=20), nullable=False),
        sa.Column("target_id", sa.String(length=255), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=40), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_opcmd_action_id", "operator_commands", ["action", "id"])
    op.create_index("ix_opcmd_target", "operator_commands", ["target_kind", "target_id"])
    op.create_index("ix_opcmd_user", "operator_commands", ["username"])
    op.create_table(
        "rest_usage",
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("endpoint", sa.String(length=255), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("username", "method", "endpoint", "day"),
    )
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_table("rest_usage")
    op.drop_table("operator_commands")
