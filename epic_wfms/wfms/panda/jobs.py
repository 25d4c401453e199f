"""PanDA jobs for a task's STFs, as panda-client ``JobSpec``s (one STF per job).

In production JEDI's JobGenerator makes these from a task's input files once its
ContentsFeeder has read the dataset from Rucio (on loopback: ``LocalPandaServer.jedi_cycle``).
This builds the same jobs directly (``jediTaskID``, input file = the STF, the task's command,
PanDA queue) and submits them through panda-client's ``submitJobs``, for ``PandaExecutor``,
which places single jobs at a queue; the server validates and stores them like JEDI's.
"""

from __future__ import annotations

import shlex

from pandaclient import MiscUtils
from pandaclient.FileSpec import FileSpec
from pandaclient.JobSpec import JobSpec

from epic_wfms.model import naming
from epic_wfms.wfms.panda.client import PandaConnection
from epic_wfms.wfms.panda.errors import PandaError


def stf_jobs(task_id: int, params: dict, stf_filenames: list[str], queue: str) -> list[JobSpec]:
    in_ds = next(i["dataset"] for i in params["jobParameters"]
                 if isinstance(i, dict) and i.get("param_type") == "input")
    out_ds = next(i["dataset"] for i in params["jobParameters"]
                  if isinstance(i, dict) and i.get("param_type") == "output")
    command = next(i["value"] for i in params["jobParameters"]
                   if isinstance(i, dict) and i.get("type") == "constant")
    jobs = []
    for n, stf in enumerate(stf_filenames, start=1):
        job = JobSpec()
        job.jediTaskID, job.jobDefinitionID = task_id, task_id
        job.jobName = f"{params['taskName']}.{n:06d}"
        job.VO, job.prodSourceLabel = params["vo"], params["prodSourceLabel"]
        job.transformation, job.computingSite = params["transPath"], queue
        job.currentPriority = job.assignedPriority = params.get("taskPriority", 900)
        job.coreCount, job.minRamCount = params.get("coreCount", 1), params.get("ramCount")
        job.workingGroup, job.processingType = params.get("workingGroup"), params.get(
            "processingType")
        job.container_name = params.get("container_name")
        job.prodDBlock, job.destinationDBlock = in_ds, out_ds
        job.maxAttempt = params.get("maxAttempt", 3)
        # the pilot runs jobParameters with a shell: names go in as single quoted words
        job.jobParameters = (f"{command} --input={shlex.quote(stf)} "
                             f"--output={shlex.quote(naming.reco_output_filename(stf))}")
        job.addFile(_file(stf, in_ds, "input"))
        job.addFile(_file(naming.reco_output_filename(stf), out_ds, "output"))
        jobs.append(job)
    return jobs


def _file(lfn: str, dataset: str, kind: str) -> FileSpec:
    spec = FileSpec()
    spec.lfn, spec.type, spec.dataset = lfn, kind, dataset
    spec.prodDBlock = spec.destinationDBlock = dataset
    spec.status = "ready" if kind == "input" else "unknown"
    spec.scope = dataset.split(":", 1)[0]
    return spec


def submit_stf_jobs(connection: PandaConnection, task_id: int, params: dict,
                    stf_filenames: list[str], queue: str) -> list[int]:
    """Submit one job per STF; returns PanDA's PandaIDs in the order of ``stf_filenames``."""
    jobs = MiscUtils.dump_jobs_json(stf_jobs(task_id, params, stf_filenames, queue))
    output = connection.api(f"submit the jobs of task {task_id} to", "job/submit",
                            {"jobs": jobs}, data=True)
    try:
        return [int(row[0]) for row in output]
    except (TypeError, ValueError, IndexError) as exc:
        raise PandaError(f"PanDA did not accept the jobs of task {task_id}",
                         why=str(output)[:500],
                         fix="the token needs the production role for managed jobs") from exc


def kill_jobs(connection: PandaConnection, panda_ids: list[int]) -> list:
    return connection.call("job kill", "killJobs", panda_ids)
