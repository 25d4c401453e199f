"""Integrity issues (R3.4/R3.5): checksum or size mismatches, sequence gaps, conflicts."""

from __future__ import annotations

from sqlalchemy import select

from epic_wfms.store.database import Database
from epic_wfms.store.schema import IntegrityIssueRecord, utcnow


def report_issue(
    db: Database, kind: str, detail: str, *, run_number: int | None = None,
    filename: str | None = None,
) -> int:
    with db.session() as session:
        issue = IntegrityIssueRecord(
            kind=kind, detail=detail, run_number=run_number, filename=filename
        )
        session.add(issue)
        session.flush()
        return issue.id


def report_or_update(db: Database, kind: str, detail: str, *, run_number: int) -> int:
    """One open issue of ``kind`` per run: created once, its detail rewritten afterwards."""
    with db.session() as session:
        issue = session.scalar(select(IntegrityIssueRecord).where(
            IntegrityIssueRecord.kind == kind, IntegrityIssueRecord.run_number == run_number,
            IntegrityIssueRecord.resolved_at.is_(None),
        ).limit(1))
        if issue is None:
            issue = IntegrityIssueRecord(kind=kind, detail=detail, run_number=run_number)
            session.add(issue)
        issue.detail = detail
        session.flush()
        return issue.id


def resolve_issues(db: Database, kind: str, filename: str) -> int:
    """Mark open issues of ``kind`` about ``filename`` resolved (e.g. a late STF arrived)."""
    with db.session() as session:
        issues = session.scalars(select(IntegrityIssueRecord).where(
            IntegrityIssueRecord.kind == kind,
            IntegrityIssueRecord.filename == filename,
            IntegrityIssueRecord.resolved_at.is_(None),
        )).all()
        for issue in issues:
            issue.resolved_at = utcnow()
        return len(issues)


def open_issues(db: Database, run_number: int | None = None) -> list[IntegrityIssueRecord]:
    with db.session() as session:
        query = select(IntegrityIssueRecord).where(IntegrityIssueRecord.resolved_at.is_(None))
        if run_number is not None:
            query = query.where(IntegrityIssueRecord.run_number == run_number)
        return list(session.scalars(query.order_by(IntegrityIssueRecord.id)))
