"""Write a simulation's decisions and usage to the store, as production brokerage would.

Simulated seconds become datetimes from ``t0``; rows are written in batches.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from epic_wfms.brokerage.decision import Decision
from epic_wfms.brokerage.request import JobRequest
from epic_wfms.lifecycle.job import JobStatus
from epic_wfms.store import accounting
from epic_wfms.store.database import Database


class StoreRecorder:
    def __init__(self, db: Database, t0: datetime, batch: int = 5000) -> None:
        self.db, self.t0, self.batch = db, t0, batch
        self._decisions: list[tuple[Decision, JobRequest]] = []
        self._decided_at: float = 0.0
        self._usage: list[accounting.Usage] = []
        self.decisions = self.usages = 0

    def _at(self, seconds: float) -> datetime:
        return self.t0 + timedelta(seconds=seconds)

    def decision(self, decision: Decision, request: JobRequest, now: float) -> None:
        if self._decisions and now != self._decided_at:
            self._flush_decisions()
        self._decided_at = now
        self._decisions.append((decision, request))
        if len(self._decisions) >= self.batch:
            self._flush_decisions()

    def usage(self, request: JobRequest, site: str, queue: str, ok: bool, started: float,
              ended: float) -> None:
        self._usage.append(accounting.Usage(
            request.job_id, site, queue, request.workflow_class,
            JobStatus.FINISHED if ok else JobStatus.FAILED,
            request.cores, self._at(started), self._at(ended), request.workflow, request.user,
            request.gpus))
        if len(self._usage) >= self.batch:
            self._flush_usage()

    def _flush_decisions(self) -> None:
        self.decisions += accounting.record_decisions(self.db, self._decisions,
                                                      self._at(self._decided_at))
        self._decisions = []

    def _flush_usage(self) -> None:
        self.usages += accounting.record_usage(self.db, self._usage)
        self._usage = []

    def close(self) -> None:
        self._flush_decisions()
        self._flush_usage()
