"""PanDA's and JEDI's own states, as their servers report them, and what each means here.

Read back from the server (``jobStatus`` of a job, ``status`` of a JEDI task, ``status`` of a
task's input file), never set by us: PanDA moves them. What a PanDA job state means for our
job record (``lifecycle.job.JobStatus``) is ``our_job_status``; the groups say which states
are final, which mean a pilot holds the job and which mean the attempt failed.
"""

from __future__ import annotations

from enum import StrEnum

from epic_wfms.lifecycle.job import JobStatus


class PandaJobStatus(StrEnum):
    """``jobStatus`` of a PanDA job (panda-server's job tables)."""

    PENDING = "pending"
    DEFINED = "defined"
    ASSIGNED = "assigned"
    WAITING = "waiting"
    THROTTLED = "throttled"
    ACTIVATED = "activated"
    SENT = "sent"
    STARTING = "starting"
    RUNNING = "running"
    HOLDING = "holding"
    TRANSFERRING = "transferring"
    MERGING = "merging"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CLOSED = "closed"


PJ = PandaJobStatus
#: a pilot holds the job (it got it from the dispatcher and has not ended it)
PANDA_JOB_RUNNING = frozenset({PJ.STARTING, PJ.RUNNING, PJ.HOLDING, PJ.TRANSFERRING,
                               PJ.MERGING})
#: the attempt ended without output (``closed``: JEDI closed it, e.g. the task was aborted)
PANDA_JOB_FAILED = frozenset({PJ.FAILED, PJ.CANCELLED, PJ.CLOSED})
#: the attempt will not change any more
PANDA_JOB_FINAL = frozenset({PJ.FINISHED, *PANDA_JOB_FAILED})

_OURS = {PJ.FINISHED: JobStatus.FINISHED, PJ.FAILED: JobStatus.FAILED,
         PJ.CLOSED: JobStatus.FAILED, PJ.CANCELLED: JobStatus.CANCELLED,
         **dict.fromkeys(PANDA_JOB_RUNNING, JobStatus.RUNNING)}


def our_job_status(panda_status: str) -> JobStatus:
    """Our job record's status for a PanDA job state; any state before a pilot took the job
    (and any state this version does not know) is ``activated``: waiting at the queue."""
    return _OURS.get(panda_status, JobStatus.ACTIVATED)


class JediTaskStatus(StrEnum):
    """``status`` of a JEDI task (the states a task reaches without an operator's command
    included; ``JEDI_TASK_FINAL`` are those it does not leave by itself)."""

    REGISTERED = "registered"
    DEFINED = "defined"
    ASSIGNING = "assigning"
    READY = "ready"
    PENDING = "pending"
    SCOUTING = "scouting"
    SCOUTED = "scouted"
    RUNNING = "running"
    PREPARED = "prepared"
    DONE = "done"
    FINISHED = "finished"
    FAILED = "failed"
    ABORTED = "aborted"
    BROKEN = "broken"
    EXHAUSTED = "exhausted"


JEDI_TASK_FINAL = frozenset({JediTaskStatus.DONE, JediTaskStatus.FINISHED,
                             JediTaskStatus.FAILED, JediTaskStatus.ABORTED,
                             JediTaskStatus.BROKEN, JediTaskStatus.EXHAUSTED})


class JediFileStatus(StrEnum):
    """``status`` of an input file of a JEDI task: JEDI's verdict on that file."""

    READY = "ready"
    PICKED = "picked"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    LOST = "lost"
    MISSING = "missing"


#: JEDI gave its last word on the file: processed, or given up after the task's attempts
JEDI_FILE_FINAL = frozenset({JediFileStatus.FINISHED, JediFileStatus.FAILED})
