"""ePIC's iDDS work type: one PanDA task (a JEDI task-parameter dict) inside an iDDS workflow.

iDDS evaluates a workflow's conditions by calling methods of its works by name
(``Condition(cond=work.is_converged, ...)``) after the work terminates; the results a work
reports (its ``output_data``: calibration residual, validation verdict, HPO loss) are what
the ePIC conditions read. Every argument is optional because iDDS rebuilds works from JSON
by calling the class without arguments.
"""

from __future__ import annotations

from idds.workflowv2.work import Work


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
