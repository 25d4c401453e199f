"""Job lifecycle (``jobs.status``): PanDA's job states, one job per attempt.

defined -> activated (queued at the site) -> running -> finished | failed (| cancelled).
Retries are new jobs (``attempt_nr``) made by the caller's policy, as JEDI decides retries.
"""

from __future__ import annotations

from enum import StrEnum

from epic_wfms.lifecycle.core import Lifecycle, group, move, new


class JobStatus(StrEnum):
    DEFINED = "defined"
    ACTIVATED = "activated"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobKind(StrEnum):
    """What a job does (``jobs.kind``)."""

    RECO = "reco"
    MERGE = "merge"
    GATHER = "gather"


J = JobStatus

JOB_ACTIVE = group("JOB_ACTIVE", {J.DEFINED, J.ACTIVATED, J.RUNNING},
               "not ended: can be killed or reprioritized; failed as lost at recovery")
JOB_UNSUCCESSFUL = group("JOB_UNSUCCESSFUL", {J.FAILED, J.CANCELLED},
                     "ended without output: diagnosed, retryable from the monitor")

JOB = Lifecycle(
    "job", "jobs.status", JobStatus,
    {
        J.DEFINED: "defined, not yet queued at its site",
        J.ACTIVATED: "queued at its site, waiting for a worker",
        J.RUNNING: "running on a worker",
        J.FINISHED: "payload exit code 0, output written",
        J.FAILED: "payload failed, timed out or lost with its worker or agent",
        J.CANCELLED: "killed by an operator",
    },
    [
        new(J.DEFINED, "an executor that defines before it activates (PanDA's order)"),
        new(J.ACTIVATED, "embedded pool: defined and activated in one insert"),
        move([J.DEFINED], J.ACTIVATED, "executor: queued at the site"),
        move([J.ACTIVATED], J.RUNNING, "worker slot: started (unless cancelled meanwhile)"),
        move([J.RUNNING], J.FINISHED, "worker slot: exit code 0"),
        move([J.ACTIVATED], J.FINISHED, "PanDA read-back: the job ran and ended between two "
             "reads of its state"),
        move([J.RUNNING], J.FAILED, "worker slot: payload failed, timed out or its pilot died"),
        move([J.DEFINED, J.ACTIVATED, J.RUNNING], J.FAILED,
             "recovery: lost with the agent that ran it"),
        move([J.DEFINED, J.ACTIVATED, J.RUNNING], J.CANCELLED, "monitor: an operator killed it"),
    ],
    [JOB_ACTIVE, JOB_UNSUCCESSFUL],
)
