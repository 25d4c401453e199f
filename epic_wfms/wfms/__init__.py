"""Execution: the workload interface, the embedded local pool (PanDA/iDDS later)."""

from epic_wfms.wfms.embedded import LocalWorkerPool
from epic_wfms.wfms.interface import JobResult, JobSpec, JobStatus, WorkloadExecutor

__all__ = ["JobResult", "JobSpec", "JobStatus", "LocalWorkerPool", "WorkloadExecutor"]
