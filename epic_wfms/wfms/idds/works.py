"""ePIC's iDDS work type: one PanDA task (a JEDI task-parameter dict) inside an iDDS workflow.

iDDS evaluates a workflow's conditions by calling methods of its works by name
(``Condition(cond=work.is_converged, ...)``) after the work terminates; the results a work
reports (its ``output_data``: calibration residual, validation verdict, HPO loss) are what
the ePIC conditions read. Every argument is optional because iDDS rebuilds works from JSON
by calling the class without arguments.
"""

from __future__ import annotations

import re

from idds.common.constants import ProcessingStatus
from idds.workflowv2.work import Work

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
                 **kwargs) -> None:
        params = task_parameters or {}
        name = params.get("taskName")
        super().__init__(executable="panda", arguments=None, parameters=None, work_tag="epic",
                         exec_type="panda", work_name=name, **kwargs)
        self.task_name = name
        self.task_parameters = params
        self.tolerance = tolerance

    # ---- results the payload reports --------------------------------------------------
    def report(self, **results: object) -> None:
        """Attach the task's outcome (e.g. ``residual=0.02``, ``validated=True``)."""
        self.output_data = {**(self.output_data or {}), **results}

    # ---- conditions iDDS calls ---------------------------------------------------------
    def is_converged(self) -> bool:
        """Calibration converged: finished with ``residual`` within ``tolerance``."""
        residual = (self.output_data or {}).get("residual")
        return bool(self.is_finished() and residual is not None and self.tolerance is not None
                    and float(residual) <= self.tolerance)

    def is_not_converged(self) -> bool:
        """Loop again: finished, but the residual is still above tolerance."""
        return bool(self.is_finished() and not self.is_converged())

    def is_validated(self) -> bool:
        """Upstream output passed validation (only then may downstream processing start)."""
        return bool(self.is_finished() and (self.output_data or {}).get("validated") is True)

    # ---- what iDDS's Carrier calls -----------------------------------------------------
    def get_new_input_output_maps(self, mapped_input_output_maps=None) -> dict:
        """No file-level contents: the work is one PanDA task and JEDI makes its jobs."""
        self.has_new_inputs = False
        return {}

    def submit_processing(self, processing: dict) -> tuple[bool, int | None, str | None]:
        """Submit the work's JEDI task once; returns ``(ok, jediTaskID, error)``."""
        proc = processing["processing_metadata"]["processing"]
        if proc.workload_id:
            return True, proc.workload_id, None
        from pandaclient import Client

        status, output = Client.insertTaskParams(self.task_parameters, verbose=False)
        message = str(output[1] if isinstance(output, tuple | list) and len(output) > 1
                      else output)
        found = re.search(r"jediTaskID=(\d+)", message)
        if status != 0 or not found:
            return False, None, f"PanDA refused task {self.task_name}: {message[:500]}"
        proc.workload_id = int(found.group(1))
        return True, proc.workload_id, None

    def poll_processing_updates(self, processing: dict, input_output_maps: dict,
                                contents_ext=None, log_prefix: str = "") -> tuple:
        """The task's status in PanDA as iDDS's processing status (no content updates)."""
        proc = processing["processing_metadata"]["processing"]
        status = processing["status"]
        if proc.workload_id:
            from pandaclient import Client

            code, task_status = Client.getTaskStatus(proc.workload_id)
            if code == 0 and isinstance(task_status, str):
                status = _TASK_STATES.get(task_status, ProcessingStatus.Running)
        return status, [], {}, [], {}
