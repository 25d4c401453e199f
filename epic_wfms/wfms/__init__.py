"""Execution: the workload interface, the embedded local pool, PanDA (``wfms/panda``) and
iDDS (``wfms/idds``) backends, and the payloads.

Kept light on purpose: payloads under ``wfms/payloads`` start as fresh subprocesses, and
importing this package must not pull in the store (SQLAlchemy) for them.
"""

from epic_wfms.wfms.interface import JobResult, JobSpec, JobStatus, WorkloadExecutor

__all__ = ["JobResult", "JobSpec", "JobStatus", "WorkloadExecutor"]
