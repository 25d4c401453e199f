"""Embedded execution: per-site local worker slots running payloads in real processes.

``runner="standing"`` (default): each slot keeps a pilot process (wfms/pilot.py) that runs one
payload after another; ``runner="subprocess"``: a fresh ``python -m payload`` per job.
"""

from __future__ import annotations

import json
import logging
import select
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from sqlalchemy import insert, update

from epic_wfms.store.database import Database
from epic_wfms.store.schema import JobRecord, ProvenanceRecord, utcnow
from epic_wfms.wfms.interface import JobCallback, JobResult, JobSpec, JobStatus, StartCallback

_TAIL = 2000
log = logging.getLogger(__name__)


class LocalWorkerPool:
    """One thread pool per site (its slots); job rows kept in the store like PanDA's jobs table."""

    def __init__(
        self,
        db: Database,
        slots: dict[str, int],
        timeout_s: float = 600.0,
        runner: str = "standing",
    ) -> None:
        if runner not in ("standing", "subprocess"):
            raise ValueError(f"runner {runner!r}: use 'standing' (pilots) or 'subprocess'")
        self.db = db
        self.runner = runner
        self._local = threading.local()
        self._pilots: list[subprocess.Popen] = []
        self._pools = {
            site: ThreadPoolExecutor(max_workers=n, thread_name_prefix=f"worker:{site}")
            for site, n in slots.items()
        }
        self._online = {site: threading.Event() for site in slots}
        for event in self._online.values():
            event.set()
        self._backlog = dict.fromkeys(slots, 0)
        self._lock = threading.Lock()
        self._start_listeners: list[StartCallback] = []
        self.timeout_s = timeout_s

    def add_start_listener(self, listener: StartCallback) -> None:
        self._start_listeners.append(listener)

    def sites(self) -> list[str]:
        return list(self._pools)

    def backlog(self, site: str) -> int:
        with self._lock:
            return self._backlog[site]

    def set_online(self, site: str, online: bool) -> None:
        (self._online[site].set if online else self._online[site].clear)()

    def submit(self, spec: JobSpec, on_done: JobCallback) -> int:
        if spec.site not in self._pools:
            raise ValueError(f"unknown site {spec.site!r}; known: {', '.join(self._pools)}")
        now = utcnow()
        with self.db.session() as session:  # defined and activated at once: one INSERT
            job_id = session.scalar(insert(JobRecord).values(
                kind=spec.kind, site=spec.site, status=JobStatus.ACTIVATED,
                attempt_nr=spec.attempt_nr, max_attempts=spec.max_attempts,
                run_number=spec.run_number, stf_filename=spec.stf_filename, output=spec.output,
                command=" ".join(spec.command), created_at=now, activated_at=now,
            ).returning(JobRecord.id))
        with self._lock:
            self._backlog[spec.site] += 1
        self._pools[spec.site].submit(self._run, job_id, spec, on_done)
        return job_id

    def _run(self, job_id: int, spec: JobSpec, on_done: JobCallback) -> None:
        self._online[spec.site].wait()
        started = utcnow()
        exit_code, error = None, None
        if self._start(job_id, started):
            for listener in self._start_listeners:
                listener(job_id, spec, started)
            exit_code, error = self._execute(spec)
        ended = utcnow()
        status, error = self._finish(job_id, spec, exit_code, error, ended)
        with self._lock:
            self._backlog[spec.site] -= 1
        try:
            on_done(JobResult(job_id, spec, status, started, ended, exit_code, error))
        except Exception:  # a bookkeeping failure must be visible, not vanish in a future
            log.exception("handling the end of job %d (%s) failed", job_id, spec.kind)

    def _execute(self, spec: JobSpec) -> tuple[int | None, str | None]:
        if self.runner == "standing":
            return self._execute_in_pilot(spec)
        try:
            proc = subprocess.run(
                spec.command, capture_output=True, text=True, timeout=self.timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            return None, f"payload exceeded {self.timeout_s:.0f}s and was killed"
        except OSError as error:
            return None, f"payload could not start: {error}"
        if proc.returncode != 0:
            return proc.returncode, (proc.stderr or proc.stdout)[-_TAIL:].strip()
        return 0, None

    def _pilot(self) -> subprocess.Popen:
        """This worker slot's standing payload process, started on first use or after a crash."""
        pilot = getattr(self._local, "pilot", None)
        if pilot is None or pilot.poll() is not None:
            pilot = subprocess.Popen(
                [sys.executable, "-m", "epic_wfms.wfms.pilot"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True, bufsize=1,
            )
            self._local.pilot = pilot
            with self._lock:
                self._pilots.append(pilot)
        return pilot

    def _execute_in_pilot(self, spec: JobSpec) -> tuple[int | None, str | None]:
        pilot = self._pilot()
        try:
            pilot.stdin.write(json.dumps({"payload": spec.payload, "args": spec.args}) + "\n")
            pilot.stdin.flush()
        except OSError as error:
            return None, f"pilot {pilot.pid} unavailable: {error}"
        ready, _, _ = select.select([pilot.stdout], [], [], self.timeout_s)
        if not ready:
            pilot.kill()
            return None, f"payload exceeded {self.timeout_s:.0f}s; pilot {pilot.pid} killed"
        line = pilot.stdout.readline()
        if not line:
            code = pilot.wait()
            return None, f"pilot {pilot.pid} died running the payload (exit code {code})"
        reply = json.loads(line)
        if reply["exit_code"] != 0:
            return reply["exit_code"], reply["output"][-_TAIL:].strip()
        return 0, None

    def _start(self, job_id: int, started: datetime) -> bool:
        """activated -> running, unless an operator cancelled the job meanwhile (monitor)."""
        with self.db.session() as session:
            return session.scalar(update(JobRecord).where(
                JobRecord.id == job_id, JobRecord.status != JobStatus.CANCELLED,
            ).values(status=JobStatus.RUNNING, started_at=started).returning(JobRecord.id)
            ) is not None

    def _finish(
        self, job_id: int, spec: JobSpec, exit_code: int | None, error: str | None,
        ended: datetime,
    ) -> tuple[JobStatus, str | None]:
        """Record the end; an operator's kill wins over the payload and keeps its reason."""
        with self.db.session() as session:
            job = session.get(JobRecord, job_id)
            if job.status == JobStatus.CANCELLED:
                job.exit_code = exit_code
                return JobStatus.FAILED, job.error or "killed"
            status = JobStatus.FINISHED if exit_code == 0 else JobStatus.FAILED
            job.status, job.ended_at, job.error, job.exit_code = status, ended, error, exit_code
            if status is JobStatus.FINISHED:
                session.add_all(
                    ProvenanceRecord(job_id=job_id, input_name=name, output_name=spec.output)
                    for name in spec.inputs
                )
            return status, error

    def shutdown(self) -> None:
        for event in self._online.values():
            event.set()
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=False)
        for pilot in self._pilots:
            if pilot.poll() is None:
                pilot.stdin.close()  # end of input: the pilot exits
                try:
                    pilot.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pilot.kill()
