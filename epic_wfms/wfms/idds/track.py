"""Our store's record of the PanDA tasks iDDS submitted for a request.

iDDS submits each work's JEDI task itself (one per loop iteration), so ``submit_tasks`` never
sees them; this reads the request's transforms from iDDS (PanDA's jediTaskID is the
workload id) and each task from PanDA, and records them in ``panda_tasks`` like the tasks we
submit (``epic-wfms panda tasks`` lists them, ``readback.sync_task`` reads their jobs).
"""

from __future__ import annotations

from dataclasses import replace

from epic_wfms.store.database import Database
from epic_wfms.wfms.idds.client import IddsConnection
from epic_wfms.wfms.panda.client import PandaConnection
from epic_wfms.wfms.panda.submit import describe, record_task


def record_request_tasks(db: Database, idds: IddsConnection, panda: PandaConnection,
                         request_id: int) -> list[int]:
    """Record (or refresh) the PanDA task of every transform of the request that has one;
    returns their jediTaskIDs in the order iDDS made the transforms."""
    recorded = []
    for transform in idds.transforms(request_id):
        if not transform.workload_id:
            continue
        task_id = int(transform.workload_id)
        params = panda.task_params(task_id)
        record = replace(describe(task_id, params),
                         status=panda.task_status(task_id) or "submitted")
        record_task(db, panda.settings.url, record, params)
        recorded.append(task_id)
    return recorded
