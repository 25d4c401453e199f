"""fast processing path: TF slices, standing workers, scaling decisions, alarms, histograms

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 14:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tf_slices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("run_number", sa.Integer(), nullable=True),
        sa.Column("stf_filename", sa.String(length=255), nullable=False),
        sa.Column("sample_filename", sa.String(length=255), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("first_tf", sa.Integer(), nullable=False),
        sa.Column("tf_count", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("express", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=100), nullable=True),
        sa.Column("available_at", _TS, nullable=False),
        sa.Column("queued_at", _TS, nullable=False),
        sa.Column("started_at", _TS, nullable=True),
        sa.Column("completed_at", _TS, nullable=True),
        sa.Column("processing_s", sa.Double(), nullable=True),
        sa.Column("n_events", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_index("ix_tf_slices_run_status", "tf_slices", ["run_number", "status"])
    op.create_table(
        "fastpath_workers",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("run_number", sa.Integer(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("registered_at", _TS, nullable=False),
        sa.Column("ended_at", _TS, nullable=True),
        sa.Column("slices_done", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_fastpath_workers_run_number", "fastpath_workers", ["run_number"])
    op.create_table(
        "fastpath_scaling",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_number", sa.Integer(), nullable=True),
        sa.Column("decided_at", _TS, nullable=False),
        sa.Column("from_size", sa.Integer(), nullable=False),
        sa.Column("to_size", sa.Integer(), nullable=False),
        sa.Column("backlog", sa.Integer(), nullable=False),
        sa.Column("slice_s", sa.Double(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_fastpath_scaling_run_number", "fastpath_scaling", ["run_number"])
    op.create_table(
        "fastpath_alarms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_number", sa.Integer(), nullable=True),
        sa.Column("slice_name", sa.String(length=255), nullable=False),
        sa.Column("stf_filename", sa.String(length=255), nullable=False),
        sa.Column("event", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("raised_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_fastpath_alarms_run_number", "fastpath_alarms", ["run_number"])
    op.create_table(
        "fastpath_histograms",
        sa.Column("run_number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("low", sa.Double(), nullable=False),
        sa.Column("high", sa.Double(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("underflow", sa.Integer(), nullable=False),
        sa.Column("overflow", sa.Integer(), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("run_number", "name"),
    )


def downgrade() -> None:
    op.drop_table("fastpath_histograms")
    op.drop_index("ix_fastpath_alarms_run_number", table_name="fastpath_alarms")
    op.drop_table("fastpath_alarms")
    op.drop_index("ix_fastpath_scaling_run_number", table_name="fastpath_scaling")
    op.drop_table("fastpath_scaling")
    op.drop_index("ix_fastpath_workers_run_number", table_name="fastpath_workers")
    op.drop_table("fastpath_workers")
    op.drop_index("ix_tf_slices_run_status", table_name="tf_slices")
    op.drop_table("tf_slices")
