"""What PanDA recorded of an ePIC work's jobs, as iDDS content updates and work results.

A pilot sends the payload's ``jobReport.json`` (Pilot 3's generic user: the file named by
``config.Payload.jobreport`` in the job's work directory) as the job's ``metaData``; PanDA
keeps it in ``metaTable`` and returns it with the job (``getFullJobStatus``: ``JobSpec.
metadata``) once the job is archived. The ePIC payloads write their result there (the
calibration's ``residual`` and ``constant``, a validation's ``validated``); this module reads
it back per job and folds the jobs of a task into the values iDDS's conditions read.

Runs inside iDDS's daemons (panda-client, idds-common; no epic-wfms dependencies).
"""

from __future__ import annotations

import json
import statistics

from idds.common.constants import ContentStatus

#: PanDA job status -> iDDS content status of the output it makes
_DONE = {"finished": ContentStatus.Available, "merging": ContentStatus.Processing}
_FAILED = ("failed", "closed", "cancelled", "lost", "broken", "missing")
_RUNNING = ("sent", "starting", "running", "holding", "transferring", "transfering")


def content_status(job) -> ContentStatus:
    status = str(job.jobStatus)
    if status in _DONE:
        return _DONE[status]
    if status in _FAILED:
        return ContentStatus.FinalFailed if _attempts_left(job) == 0 else ContentStatus.Failed
    if status == "activated":
        return ContentStatus.Activated
    if status in _RUNNING:
        return ContentStatus.Processing
    return ContentStatus.PreProcessing


def _attempts_left(job) -> int:
    try:
        return max(int(job.maxAttempt or 0) - int(job.attemptNr or 0), 0)
    except (TypeError, ValueError):
        return 0


def job_report(job) -> dict:
    """The payload's ``jobReport.json`` as PanDA returns it (``{}`` when none or not JSON)."""
    text = getattr(job, "metadata", None)
    if not text or text in ("NULL", "None"):
        return {}
    try:
        report = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


def input_names(job) -> list[str]:
    """The input files the job read (without a scope prefix)."""
    return [str(f.lfn).split(":", 1)[-1] for f in job.Files
            if f.type in ("input", "pseudo_input")]


def output_names(job) -> list[str]:
    return [str(f.lfn) for f in job.Files if f.type == "output"]


def task_job_ids(task_id: int) -> list[int]:
    from pandaclient import Client

    status, ids = Client.getPandaIDsWithTaskID(task_id, verbose=False)
    return [int(i) for i in ids or []] if status == 0 else []


def fetch_jobs(panda_ids: list[int]) -> list:
    """panda-client ``JobSpec``s of the ids (unknown ids dropped)."""
    if not panda_ids:
        return []
    from pandaclient import Client

    status, jobs = Client.getFullJobStatus(list(panda_ids), verbose=False)
    return [j for j in jobs or [] if j is not None] if status == 0 else []


def latest_per_input(jobs: list) -> dict[str, object]:
    """Input file -> its newest attempt (the highest PandaID that read it)."""
    latest: dict[str, object] = {}
    for job in sorted(jobs, key=lambda j: int(j.PandaID)):
        for name in input_names(job):
            latest[name] = job
    return latest


def content_updates(maps: dict, latest: dict[str, object]) -> list[dict]:
    """iDDS content updates for the outputs of ``maps`` whose job changed state: status,
    the job's PandaID, output files and report in the content's metadata."""
    updates = []
    for io_map in maps.values():
        for content in io_map.get("outputs") or []:
            job = latest.get(content["name"])
            if job is None:
                continue
            status = content_status(job)
            metadata = dict(content.get("content_metadata") or {})
            new_meta = {**metadata, "panda_id": int(job.PandaID), "job_status": job.jobStatus,
                        "outputs": output_names(job), "report": job_report(job)}
            if status == content.get("substatus") and new_meta == metadata:
                continue
            updates.append({"content_id": content["content_id"],
                            "request_id": content["request_id"], "status": status,
                            "substatus": status, "content_metadata": new_meta})
    return updates


def input_updates(inputs: list[dict], latest: dict[str, object]) -> list[dict]:
    """iDDS content updates for input files whose job changed state: a file is consumed
    (``Available``) when its job finished, ``FinalFailed`` when its last attempt failed.
    (iDDS closes the input collection, and lets the work finish, only when its files are.)"""
    updates = []
    for content in inputs:
        job = latest.get(content["name"])
        if job is None:
            continue
        status = content_status(job)
        if status != content.get("substatus"):
            updates.append({"content_id": content["content_id"],
                            "request_id": content["request_id"], "status": status,
                            "substatus": status})
    return updates


def work_results(latest: dict[str, object]) -> dict:
    """The task's result for the conditions, from its finished jobs' reports: the largest
    ``residual`` (the loop converges when every job's residual does), the mean ``constant``,
    ``validated_files`` (inputs whose job reported ``validated: true``) and ``validated``
    (at least one such file: downstream processing starts on those only)."""
    finished = {name: job for name, job in latest.items() if job.jobStatus == "finished"}
    reports = {name: job_report(job) for name, job in finished.items()}
    out: dict = {"jobs_finished": len(finished), "panda_ids": sorted(
        int(j.PandaID) for j in finished.values())}
    residuals = [float(r["residual"]) for r in reports.values() if "residual" in r]
    constants = [float(r["constant"]) for r in reports.values() if "constant" in r]
    if residuals:
        out["residual"] = max(residuals)
    if constants:
        out["constant"] = statistics.fmean(constants)
    verdicts = {name: r["validated"] for name, r in reports.items() if "validated" in r}
    if verdicts:
        out["validated_files"] = sorted(n for n, v in verdicts.items() if v is True)
        out["validated"] = bool(out["validated_files"])
    return out
