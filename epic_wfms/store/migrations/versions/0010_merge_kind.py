"""merges: the gather is a kind of merge, not a site (merges.kind; site NULL for the gather)

Until now the run's gather was the merge row with site 'RUN' and final = true. Now
``kind`` says partial or gather, ``site`` is NULL for the gather, and ``final`` (which only
repeated the kind) is gone.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

merges = sa.table("merges", sa.column("kind", sa.String), sa.column("site", sa.String),
                  sa.column("final", sa.Boolean))


def upgrade() -> None:
    with _merges_batch() as batch:
        batch.add_column(sa.Column("kind", sa.String(length=10), nullable=False,
                                   server_default="partial"))
        batch.alter_column("site", existing_type=sa.String(length=40), nullable=True)
    op.execute(merges.update().where(merges.c.site == "RUN").values(kind="gather", site=None))
    with _merges_batch() as batch:
        batch.alter_column("kind", existing_type=sa.String(length=10), server_default=None)
        batch.drop_column("final")


def downgrade() -> None:
    with _merges_batch() as batch:
        batch.add_column(sa.Column("final", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    op.execute(merges.update().where(merges.c.kind == "gather")
               .values(final=True, site="RUN"))
    with _merges_batch() as batch:
        batch.alter_column("final", existing_type=sa.Boolean(), server_default=None)
        batch.alter_column("site", existing_type=sa.String(length=40), nullable=False)
        batch.drop_column("kind")


@contextmanager
def _merges_batch() -> Iterator[BatchOperations]:
    """``batch_alter_table("merges")``. SQLite recreates the table, and with foreign keys
    enforced it cannot drop a table that stfs.merge_id rows point to: those links are set
    aside for the recreation and put back, in the same transaction."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("CREATE TEMPORARY TABLE _stf_merge_links AS "
                   "SELECT id, merge_id FROM stfs WHERE merge_id IS NOT NULL")
        op.execute("UPDATE stfs SET merge_id = NULL WHERE merge_id IS NOT NULL")
    with op.batch_alter_table("merges") as batch:
        yield batch
    if sqlite:
        op.execute("UPDATE stfs SET merge_id = (SELECT l.merge_id FROM _stf_merge_links l "
                   "WHERE l.id = stfs.id) WHERE id IN (SELECT id FROM _stf_merge_links)")
        op.execute("DROP TABLE _stf_merge_links")
