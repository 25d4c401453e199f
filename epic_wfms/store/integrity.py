"""Integrity issues (R3.4/R3.5): checksum or size mismatches, sequence gaps, conflicts."""

from __future__ import annotations

import re

from sqlalchemy import select

from epic_wfms.model.naming import stf_filename
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


SEQUENCE_GAP = "sequence_gap"
_GAP = re.compile(r"^STF sequences? (?P<first>\d+)(?:\.\.(?P<last>\d+))? of run ")


def resolve_run_issues(db: Database, kind: str, run_number: int) -> int:
    """Mark the run's open issues of ``kind`` resolved (what they reported is no longer so)."""
    with db.session() as session:
        issues = session.scalars(select(IntegrityIssueRecord).where(
            IntegrityIssueRecord.kind == kind,
            IntegrityIssueRecord.run_number == run_number,
            IntegrityIssueRecord.resolved_at.is_(None),
        )).all()
        for issue in issues:
            issue.resolved_at = utcnow()
        return len(issues)


def _gap_detail(run: int, first: int, last: int, before: int) -> str:
    if first == last:
        return f"STF sequence {first} of run {run} not received before {before}"
    return (f"STF sequences {first}..{last} of run {run} not received before {before} "
            f"({last - first + 1} missing)")


def report_sequence_gap(db: Database, run: int, first: int, last: int, before: int) -> int:
    """One issue for the whole gap ``first..last`` (one row, whatever its length), named
    after its first missing STF."""
    return report_issue(db, SEQUENCE_GAP, _gap_detail(run, first, last, before),
                        run_number=run, filename=stf_filename(run, first))


def sequence_arrived(db: Database, run: int, sequence: int) -> None:
    """A late STF: the open gap holding it shrinks (in place at an end, split in two in the
    middle) and is resolved once empty. Rows grow at most by one per late STF."""
    with db.session() as session:
        for issue in session.scalars(select(IntegrityIssueRecord).where(
                IntegrityIssueRecord.kind == SEQUENCE_GAP,
                IntegrityIssueRecord.run_number == run,
                IntegrityIssueRecord.resolved_at.is_(None))):
            match = _GAP.match(issue.detail)
            if match is None:
                continue
            first = int(match["first"])
            last = int(match["last"] or first)
            if not first <= sequence <= last:
                continue
            before = int(issue.detail.rsplit("before ", 1)[1].split()[0])
            parts = [(a, b) for a, b in ((first, sequence - 1), (sequence + 1, last)) if a <= b]
            if not parts:
                issue.resolved_at = utcnow()
                return
            (a, b), rest = parts[0], parts[1:]
            issue.detail, issue.filename = _gap_detail(run, a, b, before), stf_filename(run, a)
            for a, b in rest:
                session.add(IntegrityIssueRecord(
                    kind=SEQUENCE_GAP, detail=_gap_detail(run, a, b, before), run_number=run,
                    filename=stf_filename(run, a)))
            return


def open_issues(db: Database, run_number: int | None = None) -> list[IntegrityIssueRecord]:
    with db.session() as session:
        query = select(IntegrityIssueRecord).where(IntegrityIssueRecord.resolved_at.is_(None))
        if run_number is not None:
            query = query.where(IntegrityIssueRecord.run_number == run_number)
        return list(session.scalars(query.order_by(IntegrityIssueRecord.id)))
