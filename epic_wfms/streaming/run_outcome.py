"""Why a run is not a success: what it could not take in, read from the store.

A finalized run ends ``finished`` only if nothing is short; otherwise ``incomplete``, and
these reasons are shown with it (run report, ``epic-wfms status``, the monitor's run page).
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from epic_wfms.lifecycle.stf import Validation
from epic_wfms.store.database import Database
from epic_wfms.store.schema import DeadLetterRecord, IntegrityIssueRecord, StfRecord

SHORT_ISSUES = {"missing_at_end_of_run": "STFs declared at end_run never arrived"}


def shortfall(db: Database, run_number: int) -> list[str]:
    with db.session() as session:
        return session_shortfall(session, run_number)


def session_shortfall(session: Session, run_number: int) -> list[str]:
    missing_files = session.scalar(select(func.count()).select_from(StfRecord).where(
        StfRecord.run_number == run_number, StfRecord.validation == Validation.MISSING))
    issues = set(session.scalars(select(IntegrityIssueRecord.kind).where(
        IntegrityIssueRecord.run_number == run_number,
        IntegrityIssueRecord.resolved_at.is_(None),
        IntegrityIssueRecord.kind.in_(SHORT_ISSUES))))
    letters = session.scalar(select(func.count()).select_from(DeadLetterRecord).where(
        DeadLetterRecord.run_number == run_number, DeadLetterRecord.resolved_at.is_(None)))
    reasons = []
    if missing_files:
        reasons.append(f"{missing_files} announced STF file(s) never appeared (stf_file_missing)")
    reasons += [f"{SHORT_ISSUES[kind]} ({kind})" for kind in sorted(issues)]
    if letters:
        reasons.append(f"{letters} message(s) of the run dead-lettered: epic-wfms deadletters "
                       f"list --run {run_number}")
    return reasons
