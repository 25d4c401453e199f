"""ePIC's iDDS work type: one PanDA task (a JEDI task-parameter dict) inside an iDDS workflow.

iDDS evaluates a workflow's conditions by calling methods of its works by name
(``Condition(cond=work.is_converged, ...)``) after the work terminates; the results a work
reports (its ``output_data``: calibration residual, validation verdict, HPO loss) are what
the ePIC conditions read. Every argument is optional because iDDS rebuilds works from JSON
by calling the class without arguments.

What iDDS's agents call, and what it does here:

- Clerk: the work's collections (``get_input_collections``/``get_output_collections``): the
  task's input dataset in Rucio, and the task's outputs;
- Carrier (Submitter, Poller): ``get_new_input_output_maps`` lists the input dataset's files
  in Rucio (``files.py``), one map per file, so iDDS keeps what each processing consumed
  and produced; ``submit_processing`` submits the JEDI task (restricted to the validated
  files and given the previous iteration's constant where the workflow says so);
  ``get_processing_job_ids``/``get_processing_job_name_to_ids`` tie PanDA's jobs to the maps
  by the input file each read; ``poll_processing_updates`` turns the jobs' states and the
  reports their payloads wrote (``results.py``) into content updates and the work's results
  (``output_metadata``, which iDDS's Transformer and Clerk carry to the conditions).
"""

from __future__ import annotations

import logging
import re

from idds.common.constants import ProcessingStatus, TransformType
from idds.workflowv2.work import Work

from epic_wfms.wfms.idds import files, results

log = logging.getLogger(__name__)

#: JEDI task status -> iDDS processing status (the rest: still running)
_TASK_STATES = {
    "done": ProcessingStatus.Finished, "finished": ProcessingStatus.SubFinished,
    "failed": ProcessingStatus.Failed, "broken": ProcessingStatus.Broken,
    "aborted": ProcessingStatus.Cancelled, "tobroken": ProcessingStatus.Broken,
    "registered": ProcessingStatus.Submitted, "defined": ProcessingStatus.Submitted,
    "ready": ProcessingStatus.Submitted,
}


class EpicPandaWork(Work):
    """A work whose payload is a PanDA task; ``task_parameters`` as panda-client submits."""

    def __init__(self, task_parameters: dict | None = None, tolerance: float | None = None,
                 only_validated: bool = False, constant_argument: str | None = None,
                 looped: bool = False, max_iterations: int | None = None,
                 accept_exhausted: bool = False, **kwargs) -> None:
        params = task_parameters or {}
        name = params.get("taskName")
        dataset = files.input_dataset(params)
        collections = {}
        if name and "primary_input_collection" not in kwargs and not kwargs.get("loading"):
            scope, bare = files.split_did(dataset) if dataset else ("pseudo_dataset",
                                                                     f"{name}.noinput")
            collections = {
                "primary_input_collection": {"scope": scope, "name": bare},
                "primary_output_collection": {"scope": scope,
                                              "name": f"{name.rstrip('/')}.outputs"}}
        # a processing work (iDDS's messages about its collections name the work's type)
        kwargs.setdefault("work_type", TransformType.Processing)
        super().__init__(executable="panda", arguments=None, parameters=None, work_tag="epic",
                         exec_type="panda", work_name=name, **collections, **kwargs)
        self.task_name = name
        self.task_parameters = params
        self.tolerance = tolerance
        # downstream of a validation: read only the files iDDS hands over from the upstream's
        # results (the workflow's global parameter ``user_validated_files``)
        self.only_validated = only_validated
        # the payload's option taking the previous iteration's constant (``--previous``)
        self.constant_argument = constant_argument
        # repeated by the workflow's loop: each run is its own transform and PanDA task, at
        # most ``max_iterations`` runs; then the last constant is taken (accept_exhausted)
        # or nothing after the loop starts
        self.looped = looped
        self.max_iterations = max_iterations
        self.accept_exhausted = accept_exhausted

    def iteration(self) -> int:
        """Which run of its loop this work is (iDDS's ``num_run``; 1 when it is not looped:
        iDDS numbers every work of a loop workflow's run, also the one started once after
        the loop, like the reconstruction after the calibration converged)."""
        if not getattr(self, "looped", False):
            return 1
        try:
            return max(int(str(getattr(self, "num_run", "") or 1).split(".")[-1]), 1)
        except ValueError:
            return 1

    def get_work_name(self) -> str:
        """iDDS names the work's transform after this and reuses a transform of the same
        name in the request: each loop iteration after the first is named ``<task>.it<n>``."""
        name = self.work_name
        n = self.iteration()
        if not name or n == 1:
            return name
        # the name of the iteration's PanDA task (``files.rename_outputs``): a prun task
        # name's ``/`` stays at the end
        return f"{name[:-1]}.it{n}/" if name.endswith("/") else f"{name}.it{n}"

    # ---- results the payload reports --------------------------------------------------
    def report(self, **results: object) -> None:
        """Attach the task's outcome (e.g. ``residual=0.02``, ``validated=True``)."""
        self.output_data = {**(self.output_data or {}), **results}

    # ---- conditions iDDS calls ---------------------------------------------------------
    def within_tolerance(self) -> bool:
        """Finished with ``residual`` within ``tolerance``."""
        residual = (self.output_data or {}).get("residual")
        return bool(self.is_finished() and residual is not None and self.tolerance is not None
                    and float(residual) <= self.tolerance)

    def _iterations_left(self) -> bool:
        """Below the loop's ``max_iterations`` (always, without one)."""
        limit = getattr(self, "max_iterations", None)  # works stored before it existed
        return limit is None or self.iteration() < limit

    def is_converged(self) -> bool:
        """The steps after the loop start: within tolerance, or out of iterations where the
        template accepts the last constant (``on_exhausted: accept``)."""
        return self.within_tolerance() or bool(
            getattr(self, "accept_exhausted", False) and self.is_finished()
            and not self._iterations_left())

    def is_not_converged(self) -> bool:
        """Loop again: finished, the residual still above tolerance, iterations left."""
        return bool(self.is_finished() and not self.within_tolerance()
                    and self._iterations_left())

    def is_validated(self) -> bool:
        """Upstream output passed validation (only then may downstream processing start)."""
        return bool(self.is_finished() and (self.output_data or {}).get("validated") is True)

    # ---- what iDDS's Carrier calls -----------------------------------------------------
    def allowed_inputs(self) -> set[str] | None:
        """The input files this work may read: all (None), or the validated ones."""
        if not self.only_validated:
            return None
        return set(getattr(self, "user_validated_files", None) or [])

    def get_new_input_output_maps(self, mapped_input_output_maps=None) -> dict:
        """One map per file of the input dataset not mapped yet (in Rucio, ``RUCIO_CONFIG``);
        more may come while the dataset is open (``runUntilClosed``)."""
        inputs, outputs = self.get_input_collections(), self.get_output_collections()
        if not inputs or inputs[0].scope == "pseudo_dataset":
            self.set_has_new_inputs(False)
            return {}
        coll = inputs[0]
        dataset_files, is_open = files.dataset_files(coll.scope, coll.name)
        maps = files.new_maps(dataset_files, mapped_input_output_maps or {}, coll, outputs[0],
                              self.allowed_inputs())
        self.set_has_new_inputs(is_open)
        return maps

    def task_to_submit(self) -> dict:
        """The JEDI task of this run of the work: per loop iteration its own name and the
        previous iteration's ``constant`` (the workflow's ``user_constant``); downstream of a
        validation, only the validated files."""
        params = dict(self.task_parameters)
        if self.iteration() > 1:
            params = files.rename_outputs(params, f".it{self.iteration()}")
        previous = getattr(self, "user_constant", None)
        if previous is not None and self.constant_argument:
            params = files.append_argument(params,
                                           f"{self.constant_argument}={float(previous)!r}")
        allowed = self.allowed_inputs()
        if allowed is not None:
            params = files.restrict_input_files(params, sorted(allowed))
        return params

    def submit_processing(self, processing: dict) -> tuple[bool, int | None, str | None]:
        """Submit the work's JEDI task once; returns ``(ok, jediTaskID, error)``."""
        proc = processing["processing_metadata"]["processing"]
        if proc.workload_id:
            return True, proc.workload_id, None
        from pandaclient import Client

        params = self.task_to_submit()
        status, output = Client.insertTaskParams(params, verbose=False)
        message = str(output[1] if isinstance(output, tuple | list) and len(output) > 1
                      else output)
        found = re.search(r"jediTaskID=(\d+)", message)
        if status != 0 or not found:
            return False, None, f"PanDA refused task {params['taskName']}: {message[:500]}"
        proc.workload_id = int(found.group(1))
        self.submitted_task_name = params["taskName"]
        return True, proc.workload_id, None

    def get_processing_job_ids(self, processing: dict, log_prefix: str = "") -> list[int]:
        """PanDA's jobs of the work's task (iDDS ties them to maps by their input file)."""
        task_id = processing["processing_metadata"]["processing"].workload_id
        return results.task_job_ids(task_id) if task_id else []

    def get_processing_job_name_to_ids(self, processing: dict, job_ids: list,
                                       log_prefix: str = "") -> dict[str, list[int]]:
        """Input file name -> the PanDA jobs that read it (retries included)."""
        out: dict[str, list[int]] = {}
        for job in results.fetch_jobs(job_ids):
            for name in results.input_names(job):
                out.setdefault(name, []).append(int(job.PandaID))
        return out

    @staticmethod
    def _input_contents(processing: dict) -> list[dict]:
        """The processing's input contents, from iDDS's catalog (the Poller hands the work
        its maps with output contents only)."""
        from idds.common.constants import ContentRelationType
        from idds.core import catalog

        return catalog.get_contents(request_id=processing["request_id"],
                                    transform_id=processing["transform_id"],
                                    content_relation_type=ContentRelationType.Input) or []

    def poll_processing_updates(self, processing: dict, input_output_maps: dict,
                                contents_ext=None, log_prefix: str = "", **_: object) -> tuple:
        """The task's status, its jobs' states as content updates of the maps' outputs, and
        the results the payloads reported (``output_metadata``: what the conditions read)."""
        proc = processing["processing_metadata"]["processing"]
        status = processing["status"]
        if not proc.workload_id:
            return status, [], {}, [], {}
        from pandaclient import Client

        code, task_status = Client.getTaskStatus(proc.workload_id)
        if code == 0 and isinstance(task_status, str):
            status = _TASK_STATES.get(task_status, ProcessingStatus.Running)
        latest = results.latest_per_input(results.fetch_jobs(
            results.task_job_ids(proc.workload_id)))
        updates = results.content_updates(input_output_maps or {}, latest)
        updates += results.input_updates(self._input_contents(processing), latest)
        outcome = results.work_results(latest)
        self.output_data = {**(self.output_data or {}), **outcome}
        parameters = {"output_metadata": self.output_data} if outcome.get("jobs_finished") \
            else {}
        log.info("%spoll %s: task %s %s, %d content updates, results %s", log_prefix,
                 self.task_name, proc.workload_id, task_status, len(updates), outcome)
        return status, updates, {}, [], parameters
