"""Job attempts as records in the store: what every executor writes when it takes a job, so
the run report, the monitor, provenance and recovery read one table whoever runs the job."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import insert

from epic_wfms.lifecycle.job import JOB, JobStatus
from epic_wfms.store.database import Database
from epic_wfms.store.schema import JobRecord, utcnow
from epic_wfms.wfms.interface import JobSpec


def define_activated(db: Database, specs: list[JobSpec], command: Callable[[JobSpec], str],
                     agent: str | None = None) -> list[int]:
    """Each spec as a job record, ``activated``, in one INSERT; their ids in order.
    ``command``: the command line as the executor runs it; ``agent``: who owns the job."""
    now = utcnow()
    rows = [{
        "kind": spec.kind, "site": spec.site, "status": JOB.check(None, JobStatus.ACTIVATED),
        "attempt_nr": spec.attempt_nr, "max_attempts": spec.max_attempts,
        "run_number": spec.run_number, "stf_filename": spec.stf_filename,
        "output": spec.output, "agent": agent, "command": command(spec), "created_at": now,
        "activated_at": now,
    } for spec in specs]
    with db.session() as session:
        return list(session.scalars(
            insert(JobRecord).returning(JobRecord.id, sort_by_parameter_order=True), rows))
