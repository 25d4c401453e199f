"""Read PanDA's view of tasks back into our store: task status, its jobs, the STFs they read.

A job is tied to the STF whose file name is one of the job's input files (PanDA's
``filesTable4`` rows of type ``input``); ids stay PanDA's (``jediTaskID``, ``PandaID``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from epic_wfms.store.database import Database
from epic_wfms.store.schema import PandaJobRecord, PandaTaskRecord, utcnow
from epic_wfms.store.stfs import stf_by_filename
from epic_wfms.wfms.panda.client import PandaConnection
from epic_wfms.wfms.panda.errors import PandaError

ERROR_FIELDS = ("brokerageErrorDiag", "ddmErrorDiag", "exeErrorDiag", "jobDispatcherErrorDiag",
                 "pilotErrorDiag", "supErrorDiag", "taskBufferErrorDiag")


def job_error(job) -> str | None:
    """A PanDA job's diagnostics, those it has, in one line."""
    return "; ".join(str(getattr(job, k)) for k in ERROR_FIELDS
                     if getattr(job, k, None) not in (None, "", "NULL", "None")) or None


def job_exit_code(job) -> int | None:
    """The payload's exit code as the pilot reported it (``transExitCode``), if it did."""
    try:
        return int(job.transExitCode)
    except (TypeError, ValueError):
        return None


def job_time(value: object) -> datetime | None:
    """One of a PanDA job's times (naive UTC datetimes, or their text) as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value not in ("", "NULL", "None"):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


@dataclass(frozen=True)
class TaskSnapshot:
    jedi_task_id: int
    status: str
    jobs: dict[int, str]  # PandaID -> job status
    stfs: dict[int, str | None]  # PandaID -> STF file name read


def sync_task(connection: PandaConnection, db: Database, task_id: int) -> TaskSnapshot:
    """Ask PanDA for the task and its jobs; upsert ``panda_tasks``/``panda_jobs``."""
    details = connection.task_details(task_id)
    status = details.get("status")
    if not status:
        raise PandaError(f"PanDA does not know task {task_id}", why=str(details)[:300],
                         fix="check the task id (epic-wfms panda tasks)")
    ids = sorted(set(connection.job_ids(task_id)) | set(details.get("PandaID") or []))
    jobs = [j for j in connection.jobs(ids) if j is not None]
    with db.session() as session:
        task = session.get(PandaTaskRecord, task_id)
        if task is None:
            raise PandaError(f"task {task_id} is not in our store",
                             why="only tasks submitted through epic-wfms are tracked",
                             fix="submit it with epic_wfms.wfms.panda.submit.submit_tasks")
        task.status, task.updated_at = status, utcnow()
        snapshot_jobs, snapshot_stfs = {}, {}
        for job in jobs:
            inputs = [f.lfn for f in job.Files if f.type == "input"]
            stf = next((name for name in inputs if stf_by_filename(session, name)), None)
            error = job_error(job)
            session.merge(PandaJobRecord(
                panda_id=int(job.PandaID), jedi_task_id=task_id, status=job.jobStatus,
                site=job.computingSite, attempt_nr=int(job.attemptNr or 0), input_files=inputs,
                stf_filename=stf, error=error, updated_at=utcnow()))
            snapshot_jobs[int(job.PandaID)] = job.jobStatus
            snapshot_stfs[int(job.PandaID)] = stf
    return TaskSnapshot(task_id, status, snapshot_jobs, snapshot_stfs)
