"""template submissions, step runs and production tag usage

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 14:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "template_submissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("template", sa.String(length=100), nullable=False),
        sa.Column("template_version", sa.String(length=20), nullable=False),
        sa.Column("template_hash", sa.String(length=64), nullable=False),
        sa.Column("rendered_hash", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=20), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("campaign", sa.String(length=100), nullable=False),
        sa.Column("activity", sa.String(length=20), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("rendered", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("runtime", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_template_submissions_template", "template_submissions", ["template"])
    op.create_index("ix_template_submissions_rendered_hash", "template_submissions",
                    ["rendered_hash"])
    op.create_index("ix_template_submissions_campaign", "template_submissions", ["campaign"])
    op.create_table(
        "template_step_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=100), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("job_index", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("runtime", sa.String(length=40), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["submission_id"], ["template_submissions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_template_step_runs_submission_id", "template_step_runs",
                    ["submission_id"])
    op.create_table(
        "production_tag_usage",
        sa.Column("tag", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=1), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("first_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["submission_id"], ["template_submissions.id"]),
        sa.PrimaryKeyConstraint("tag"),
    )


def downgrade() -> None:
    op.drop_table("production_tag_usage")
    op.drop_index("ix_template_step_runs_submission_id", table_name="template_step_runs")
    op.drop_table("template_step_runs")
    op.drop_index("ix_template_submissions_campaign", table_name="template_submissions")
    op.drop_index("ix_template_submissions_rendered_hash", table_name="template_submissions")
    op.drop_index("ix_template_submissions_template", table_name="template_submissions")
    op.drop_table("template_submissions")
