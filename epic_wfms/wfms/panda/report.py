"""What PanDA did for a streaming run, as our store holds it: its tasks (PanDA's
``jediTaskID``) and every job attempt (``PandaID`` in ``jobs.panda_id``) by status."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select

from epic_wfms.lifecycle.job import JobStatus
from epic_wfms.store.database import Database
from epic_wfms.store.schema import JobRecord, PandaTaskRecord, utcnow
from epic_wfms.wfms.panda.client import PandaConnection
from epic_wfms.wfms.panda.states import JEDI_TASK_FINAL


def run_on_panda(db: Database, run_number: int) -> dict[str, Any]:
    with db.session() as session:
        tasks = list(session.scalars(select(PandaTaskRecord).where(
            PandaTaskRecord.run_number == run_number).order_by(PandaTaskRecord.jedi_task_id)))
        jobs = dict(session.execute(select(JobRecord.status, func.count()).where(
            JobRecord.run_number == run_number, JobRecord.panda_id.is_not(None))
            .group_by(JobRecord.status)).all())
    return {
        "tasks": [{"jediTaskID": t.jedi_task_id, "site": t.site, "kind": t.kind,
                   "status": t.status} for t in tasks],
        "jobs": sum(jobs.values()), "jobs_finished": jobs.get(JobStatus.FINISHED, 0),
        "jobs_failed": jobs.get(JobStatus.FAILED, 0),
    }


def settle_tasks(connection: PandaConnection, db: Database, run_number: int,
                 timeout_s: float, poll_s: float = 5.0) -> bool:
    """After the run ended (its datasets closed), follow its tasks until PanDA ends them by
    themselves (JEDI's PostProcessor, a 60 s cycle upstream), their status kept in the store;
    True when every task ended within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        with db.session() as session:
            tasks = list(session.scalars(select(PandaTaskRecord).where(
                PandaTaskRecord.run_number == run_number)))
            for task in tasks:
                if task.status not in JEDI_TASK_FINAL:
                    task.status = connection.task_status(task.jedi_task_id) or task.status
                    task.updated_at = utcnow()
            if all(t.status in JEDI_TASK_FINAL for t in tasks):
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
