"""The E1s as the live decision box sees them: the site catalogue's fabric, with what the store
says now about each site: taken offline by an operator (``epic-wfms sites offline``), or
avoided for its recent job failures (``brokerage/health.py``'s policy over the jobs' ends).

Every process reads the same store, so the ingest agent routing STFs sees an operator's
command and the processing agents' job failures wherever those happened.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from sqlalchemy import select

from epic_wfms.brokerage.fabric import Fabric
from epic_wfms.brokerage.health import HealthPolicy
from epic_wfms.brokerage.state import FabricState
from epic_wfms.lifecycle.job import JobStatus
from epic_wfms.sites.catalogue import Catalogue
from epic_wfms.store.controls import SiteOffline, sites_offline
from epic_wfms.store.database import Database
from epic_wfms.store.schema import JobRecord, utcnow

JOB_ENDS = (JobStatus.FINISHED, JobStatus.FAILED)
LAG_S = 10.0  # how late a job's end may be written after a later end was seen
JOBS_EVERY_S = 1.0  # the jobs' ends are read at most this often (operator commands: always)


class SiteView:
    """``FabricState`` over the catalogue, refreshed from the store (``refresh``)."""

    def __init__(self, db: Database, catalogue: Catalogue,
                 health: HealthPolicy | None = None) -> None:
        self.db = db
        self.fabric = Fabric.from_catalogue(catalogue)
        self.state = FabricState(self.fabric, health)
        self.offline: dict[str, SiteOffline] = {}
        # job ends fed to the health policy: the newest end seen, and the ids seen within
        # LAG_S before it (an end is written when its job's batch is recorded, not at once)
        self._newest = utcnow() - timedelta(seconds=self.state.health.policy.window_s)
        self._seen: dict[int, datetime] = {}
        self._jobs_due = 0.0

    def refresh(self, now: float | None = None) -> float:
        """Read the operators' site commands and the jobs ended since the last refresh; the
        time (epoch seconds) the state is valid for."""
        now = time.time() if now is None else now
        index, health = self.fabric.site_index, self.state.health
        since = self._newest - timedelta(seconds=LAG_S)
        read_jobs = time.monotonic() >= self._jobs_due
        with self.db.session() as session:
            self.offline = sites_offline(session)
            ended = session.execute(select(
                JobRecord.id, JobRecord.site, JobRecord.status, JobRecord.ended_at).where(
                JobRecord.status.in_(JOB_ENDS), JobRecord.ended_at >= since)
                .order_by(JobRecord.ended_at, JobRecord.id)).all() if read_jobs else []
        if read_jobs:
            self._jobs_due = time.monotonic() + JOBS_EVERY_S
        for job_id, site, status, ended_at in ended:
            if job_id in self._seen:
                continue
            self._seen[job_id] = ended_at
            self._newest = max(self._newest, ended_at)
            if site in index:
                health.record(index[site], status == JobStatus.FINISHED, ended_at.timestamp())
        since = self._newest - timedelta(seconds=LAG_S)
        self._seen = {i: at for i, at in self._seen.items() if at >= since}
        for name, i in index.items():
            if name in self.offline:
                health.set_offline(i, self.offline[name].reason or "taken offline")
            else:
                health.set_online(i)
        health.refresh(now)
        return now

    def status(self, site: str, now: float) -> tuple[str, str]:
        """(ok|probing|avoided|downtime|offline, why) of a catalogue site."""
        i = self.fabric.site_index[site]
        return self.state.health.status(i, now), self.state.health.reason(i)
