"""sites, brokerage decisions and resource accounting

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 14:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "brokerage_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_ref", sa.String(length=255), nullable=False),
        sa.Column("workflow", sa.String(length=100), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("activity", sa.String(length=40), nullable=False),
        sa.Column("lane", sa.String(length=10), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("site", sa.String(length=40), nullable=True),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_brokerage_decisions_job_ref", "brokerage_decisions", ["job_ref"])
    op.create_index("ix_decision_site_time", "brokerage_decisions", ["site", "decided_at"])
    op.create_table(
        "resource_usage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_ref", sa.String(length=255), nullable=False),
        sa.Column("workflow", sa.String(length=100), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("site", sa.String(length=40), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("activity", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("cores", sa.Integer(), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("core_seconds", sa.Float(), nullable=False),
        sa.Column("gpu_seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_resource_usage_job_ref", "resource_usage", ["job_ref"])
    op.create_index("ix_usage_site_activity", "resource_usage", ["site", "activity"])
    op.create_index("ix_usage_workflow", "resource_usage", ["workflow"])
    op.create_index("ix_usage_user", "resource_usage", ["username"])
    op.create_index("ix_usage_ended", "resource_usage", ["ended_at"])


def downgrade() -> None:
    op.drop_index("ix_usage_ended", table_name="resource_usage")
    op.drop_index("ix_usage_user", table_name="resource_usage")
    op.drop_index("ix_usage_workflow", table_name="resource_usage")
    op.drop_index("ix_usage_site_activity", table_name="resource_usage")
    op.drop_index("ix_resource_usage_job_ref", table_name="resource_usage")
    op.drop_table("resource_usage")
    op.drop_index("ix_decision_site_time", table_name="brokerage_decisions")
    op.drop_index("ix_brokerage_decisions_job_ref", table_name="brokerage_decisions")
    op.drop_table("brokerage_decisions")
