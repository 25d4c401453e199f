"""Run reports: counts, latency percentiles and lost STFs, read from the store and the output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select

from epic_wfms.ddm import DID, DataManagement
from epic_wfms.lifecycle.merge import MergeStatus
from epic_wfms.lifecycle.stf import STF_DONE, ArchiveStatus
from epic_wfms.model import naming
from epic_wfms.store.database import Database
from epic_wfms.store.schema import (
    DeadLetterRecord,
    IntegrityIssueRecord,
    JobRecord,
    MergeRecord,
    RunRecord,
    StfRecord,
)
from epic_wfms.streaming.run_outcome import shortfall


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def merged_stfs(ddm: DataManagement, db: Database, run_number: int) -> set[str]:
    """STF names actually present in the run's final merged output file."""
    with db.session() as session:
        run = session.get(RunRecord, run_number)
        output = run.merged_output if run else None
    if not output:
        return set()
    for replica in ddm.list_replicas(DID(naming.SCOPE, output)):
        if replica.state == "A":
            return set(json.loads(Path(replica.path).read_text())["stfs"])
    return set()


def run_report(
    db: Database, ddm: DataManagement, run_number: int, produced: list[str]
) -> dict[str, Any]:
    with db.session() as session:
        stfs = session.scalars(select(StfRecord).where(StfRecord.run_number == run_number)).all()
        jobs = session.execute(select(JobRecord.kind, JobRecord.status, func.count()).where(
            JobRecord.run_number == run_number).group_by(JobRecord.kind, JobRecord.status)).all()
        issues = session.execute(select(IntegrityIssueRecord.kind, func.count()).where(
            IntegrityIssueRecord.run_number == run_number,
            IntegrityIssueRecord.resolved_at.is_(None),
        ).group_by(IntegrityIssueRecord.kind)).all()
        merges = session.scalar(select(func.count()).select_from(MergeRecord).where(
            MergeRecord.run_number == run_number, MergeRecord.status == MergeStatus.DONE))
        dead = session.scalars(select(DeadLetterRecord).where(  # this run's, or of no run
            DeadLetterRecord.resolved_at.is_(None),
            or_(DeadLetterRecord.run_number == run_number, DeadLetterRecord.run_number.is_(None)),
        ).order_by(DeadLetterRecord.id)).all()
        run = session.get(RunRecord, run_number)
    merged = merged_stfs(ddm, db, run_number)
    latencies = [
        (s.dispatched_at - s.available_at).total_seconds() for s in stfs if s.dispatched_at
    ]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return {
        "run_number": run_number,
        "run_status": run.status if run else None,
        "stfs_produced": len(produced),
        "stfs_registered": sum(1 for s in stfs if s.registered_at),
        "stfs_archived": sum(1 for s in stfs if s.archive_status == ArchiveStatus.ARCHIVED),
        "stfs_processed": sum(1 for s in stfs if s.processing_status in STF_DONE),
        "stfs_merged": len(merged),
        "latency_s": {
            "p50": round(p50, 4) if p50 is not None else None,
            "p99": round(p99, 4) if p99 is not None else None,
            "n": len(latencies),
        },
        "lost": len(set(produced) - merged),
        "merges": merges,
        "merged_output": run.merged_output if run else None,
        "jobs": {f"{kind}.{status}": n for kind, status, n in jobs},
        "integrity_issues": dict(issues),
        "dead_letters": len(dead),
        "dead_letter_reasons": [f"#{d.id} {d.msg_type or '?'}: {d.reason}" for d in dead[:10]],
        "shortfall": shortfall(db, run_number),
    }
