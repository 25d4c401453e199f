"""``epic-wfms status``: runs, STFs, jobs and open issues, read from the bookkeeping store."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from epic_wfms import __version__
from epic_wfms.lifecycle.run import RunStatus
from epic_wfms.store.database import Database
from epic_wfms.store.deadletters import open_by_run
from epic_wfms.store.migrate import schema_revision
from epic_wfms.store.schema import (
    AgentRecord,
    IntegrityIssueRecord,
    JobRecord,
    RunRecord,
    StateTransitionRecord,
    StfRecord,
    utcnow,
)
from epic_wfms.streaming.run_outcome import shortfall


def store_status(db: Database, last_runs: int = 10) -> dict[str, Any]:
    with db.session() as session:
        runs = session.scalars(
            select(RunRecord).order_by(RunRecord.number.desc()).limit(last_runs)
        ).all()
        stf_counts = dict(session.execute(
            select(StfRecord.run_number, func.count()).group_by(StfRecord.run_number)
        ).all())
        processing = session.execute(
            select(StfRecord.processing_status, func.count()).group_by(StfRecord.processing_status)
        ).all()
        archive = session.execute(
            select(StfRecord.archive_status, func.count()).group_by(StfRecord.archive_status)
        ).all()
        jobs = session.execute(
            select(JobRecord.kind, JobRecord.status, func.count())
            .group_by(JobRecord.kind, JobRecord.status)
        ).all()
        issues = session.execute(
            select(IntegrityIssueRecord.kind, func.count())
            .where(IntegrityIssueRecord.resolved_at.is_(None))
            .group_by(IntegrityIssueRecord.kind)
        ).all()
        last = session.scalar(select(StateTransitionRecord).order_by(
            StateTransitionRecord.id.desc()).limit(1))
        agents = session.scalars(select(AgentRecord).order_by(AgentRecord.heartbeat_at.desc())
                                 .limit(20)).all()
    letters = open_by_run(db)
    return {
        "version": __version__,
        "schema": schema_revision(db.engine),  # Alembic revision of the store, and head
        "detector_state": f"{last.to_state}/{last.to_substate}" if last else "unknown",
        "runs": [
            {"run": r.number, "type": r.run_type, "status": r.status,
             "stfs": stf_counts.get(r.number, 0), "merged_output": r.merged_output,
             "start": r.start_time.isoformat() if r.start_time else None,
             "end": r.end_time.isoformat() if r.end_time else None,
             "dead_letters": letters.get(r.number, 0),
             "short": shortfall(db, r.number)
             if r.status in (RunStatus.CLOSED, RunStatus.INCOMPLETE) else []}
            for r in runs
        ],
        "open_dead_letters": {"total": sum(letters.values()),
                              "without_run": letters.get(None, 0)},
        "outside_run_stfs": stf_counts.get(None, 0),
        "stf_processing": dict(processing),
        "stf_archive": dict(archive),
        "jobs": {f"{k}.{s}": n for k, s, n in jobs},
        "open_integrity_issues": dict(issues),
        "agents": [
            {"name": a.name, "role": a.role, "status": a.status,
             "heartbeat_age_s": round((utcnow() - a.heartbeat_at).total_seconds(), 1)}
            for a in agents
        ],
    }
