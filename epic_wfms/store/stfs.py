"""Looking up STF records by their file name (the natural key every message carries)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from epic_wfms.store.schema import StfRecord


def stf_by_filename(session: Session, filename: str) -> StfRecord | None:
    return session.scalar(select(StfRecord).where(StfRecord.filename == filename))


def stfs_by_filename(session: Session, filenames: list[str]) -> dict[str, StfRecord]:
    """Bulk lookup: one query for a whole batch of messages."""
    rows = session.scalars(select(StfRecord).where(StfRecord.filename.in_(filenames)))
    return {row.filename: row for row in rows}
