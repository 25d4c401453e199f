"""Template lifecycles: submissions (``template_submissions.status``) and the jobs the local
runner runs for a step (``template_step_runs.status``)."""

from __future__ import annotations

from enum import StrEnum

from epic_wfms.lifecycle.core import Lifecycle, group, move, new


class SubmissionStatus(StrEnum):
    DRY_RUN = "dry-run"
    SUBMITTED = "submitted"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


U = SubmissionStatus

SUBMISSION_ENDED = group("SUBMISSION_ENDED", {U.FINISHED, U.FAILED, U.CANCELLED},
                         "ended: its end time is recorded")
SUBMISSION_KILLABLE = group("SUBMISSION_KILLABLE", {U.SUBMITTED, U.RUNNING},
                            "an operator may kill it from the monitor")

SUBMISSION = Lifecycle(
    "template submission", "template_submissions.status", SubmissionStatus,
    {
        U.DRY_RUN: "rendered and recorded, not sent",
        U.SUBMITTED: "rendered and handed to its target (panda, idds, cwl)",
        U.RUNNING: "the local workflow runner runs its steps",
        U.FINISHED: "every step finished",
        U.FAILED: "a step failed or was skipped",
        U.CANCELLED: "killed by an operator (its PanDA tasks killed; a local runner stops "
                     "before its next job)",
    },
    [
        new(U.DRY_RUN, "template submit --dry-run"),
        new(U.SUBMITTED, "template submit to a target"),
        new(U.RUNNING, "template submit --target local"),
        move([U.RUNNING], U.FINISHED, "local runner: all steps finished"),
        move([U.RUNNING], U.FAILED, "local runner: a step did not finish"),
        move([U.SUBMITTED, U.RUNNING], U.CANCELLED, "monitor: an operator killed it"),
        move([U.SUBMITTED, U.CANCELLED], U.RUNNING,
             "monitor: an operator retried its failed PanDA tasks"),
    ],
    [SUBMISSION_ENDED, SUBMISSION_KILLABLE],
)


class StepRunStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


STEP_RUN = Lifecycle(
    "template step run", "template_step_runs.status", StepRunStatus,
    {
        StepRunStatus.RUNNING: "the payload command runs",
        StepRunStatus.FINISHED: "exit code 0 and every declared output written",
        StepRunStatus.FAILED: "non-zero exit code or a declared output missing",
    },
    [
        new(StepRunStatus.RUNNING, "local runner: job, loop check or validation started"),
        move([StepRunStatus.RUNNING], StepRunStatus.FINISHED, "local runner: it succeeded"),
        move([StepRunStatus.RUNNING], StepRunStatus.FAILED, "local runner: it failed"),
    ],
)


class StepOutcome(StrEnum):
    """How a step ended, in the local runner's report (a skipped step ran no job)."""

    FINISHED = "finished"
    FAILED = "failed"
    SKIPPED = "skipped"
