"""Execution interface: define jobs, run them at a site, report their PanDA-style states.

Job states and their moves are the job lifecycle (``epic_wfms.lifecycle.job``, re-exported
here). Each attempt is its own job with ``attempt_nr``; retries are the caller's policy
(streaming/processing.py), as JEDI decides retries, not the pilot.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from epic_wfms.lifecycle.job import JobKind, JobStatus

__all__ = ["JobCallback", "JobKind", "JobResult", "JobSpec", "JobStatus", "StartCallback",
           "WorkloadExecutor"]


@dataclass(frozen=True)
class JobSpec:
    """``payload`` is the Python module run as ``python -m payload *args`` (the transformation)."""

    kind: JobKind
    site: str
    payload: str
    args: list[str]
    inputs: list[str]  # logical file names consumed (provenance)
    output: str  # logical file name produced
    run_number: int | None = None
    stf_filename: str | None = None
    attempt_nr: int = 1
    max_attempts: int = 3

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", self.payload, *self.args]


@dataclass(frozen=True)
class JobResult:
    job_id: int
    spec: JobSpec
    status: JobStatus
    started_at: datetime | None
    ended_at: datetime
    exit_code: int | None
    error: str | None = None
    extra: dict = field(default_factory=dict)


JobCallback = Callable[[JobResult], None]
StartCallback = Callable[[list[tuple[int, JobSpec]], datetime], None]  # (job id, spec) started


class WorkloadExecutor(Protocol):
    def submit(self, spec: JobSpec, on_done: JobCallback) -> int:
        """Define and activate a job; ``on_done`` is called once it finished or failed."""
        ...

    def submit_many(self, jobs: list[tuple[JobSpec, JobCallback]]) -> list[int]:
        """Bulk ``submit``: the job ids in order (one round trip where the backend can)."""
        ...

    def add_start_listener(self, listener: StartCallback) -> None:
        """Be told when jobs start running on a worker (dispatch time); jobs that start
        together are reported together."""
        ...

    def backlog(self, site: str) -> int:
        """Jobs activated or running at ``site`` (input to load-based decisions)."""
        ...

    def sites(self) -> list[str]: ...

    def set_online(self, site: str, online: bool) -> None:
        """Take a site's queue offline (jobs stay activated) or bring it back."""
        ...

    def shutdown(self) -> None: ...
