"""The ePIC testbed followed as it is (issue 18): STFs awaited until their file appears, runs
counting from a first sequence, synchronised transitions, dead letters by run and resolution

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "awaited_stfs",
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("run_number", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("announcement", sa.JSON(), nullable=False),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("filename"),
    )
    op.create_index("ix_awaited_stfs_run_number", "awaited_stfs", ["run_number"])
    op.create_index("ix_awaited_stfs_status", "awaited_stfs", ["status"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("first_sequence", sa.Integer(), nullable=False,
                                   server_default="0"))
    with op.batch_alter_table("state_transitions") as batch:
        batch.add_column(sa.Column("synchronised", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(sa.Column("run_number", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("msg_type", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("resolution", sa.Text(), nullable=True))
    op.create_index("ix_dead_letters_run_number", "dead_letters", ["run_number"])


def downgrade() -> None:
    op.drop_index("ix_dead_letters_run_number", table_name="dead_letters")
    with op.batch_alter_table("dead_letters") as batch:
        for column in ("resolution", "resolved_at", "msg_type", "run_number"):
            batch.drop_column(column)
    with op.batch_alter_table("state_transitions") as batch:
        batch.drop_column("synchronised")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("first_sequence")
    op.drop_index("ix_awaited_stfs_status", table_name="awaited_stfs")
    op.drop_index("ix_awaited_stfs_run_number", table_name="awaited_stfs")
    op.drop_table("awaited_stfs")
