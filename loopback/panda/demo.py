"""``epic-wfms demo --wfms panda``: the demo run's processing submitted to a local PanDA.

After the streaming run, each E1 site's prompt-processing task is submitted to a real
panda-server on loopback, refined by JEDI's TaskRefiner step, given one job per STF the
decision box routed to that site, and read back into the store (``epic-wfms panda tasks``).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from epic_wfms.store.database import Database
from epic_wfms.store.schema import StfRecord
from epic_wfms.wfms.panda import taskparams
from epic_wfms.wfms.panda.client import PandaConnection, PandaSettings
from epic_wfms.wfms.panda.jobs import submit_stf_jobs
from epic_wfms.wfms.panda.readback import sync_task
from epic_wfms.wfms.panda.submit import submit_tasks
from loopback.panda import LocalPandaServer

QUEUES = {"E1_BNL": "BNL_EPIC_PROMPT", "E1_JLAB": "JLAB_EPIC_PROMPT"}


def stfs_by_site(db: Database, run_number: int) -> dict[str, list[str]]:
    with db.session() as session:
        rows = session.execute(select(StfRecord.site, StfRecord.filename).where(
            StfRecord.run_number == run_number).order_by(StfRecord.sequence)).all()
    sites: dict[str, list[str]] = {}
    for site, name in rows:
        if site:
            sites.setdefault(site, []).append(name)
    return sites


def submit_run_to_panda(db: Database, run_number: int, workdir: Path) -> dict:
    """Start the local PanDA server, submit and read back the run's prompt processing."""
    sites = stfs_by_site(db, run_number)
    summary: dict = {"tasks": [], "jobs": 0, "stfs_linked": 0}
    with LocalPandaServer(workdir) as server:
        who = server.identity()
        conn = PandaConnection(PandaSettings(server.url, who.token, who.auth_vo))
        params = {site: taskparams.prompt_task(run_number, site) for site in sites}
        records = {r.site: r for r in submit_tasks(params.values(), conn, db)}
        server.refine_tasks()
        for site, stfs in sites.items():
            task = records[site]
            submit_stf_jobs(conn, task.jedi_task_id, params[site], stfs,
                            QUEUES.get(site, f"{site}_PROMPT"))
            snap = sync_task(conn, db, task.jedi_task_id)
            summary["tasks"].append({"jediTaskID": task.jedi_task_id, "site": site,
                                     "status": snap.status, "jobs": len(snap.jobs)})
            summary["jobs"] += len(snap.jobs)
            summary["stfs_linked"] += sum(1 for s in snap.stfs.values() if s)
        summary["server"] = server.url
    return summary
