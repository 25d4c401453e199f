"""ePIC's conditional workflows as iDDS workflows (idds-workflow objects).

- calibration loop: a calibration task repeated until its residual is within tolerance
  (iDDS loop condition), then the reconstruction pass that uses the constants;
- process when upstream is validated: downstream work starts only on a validated upstream;
- hyperparameter optimisation: one training task per point, iDDS's HPO service picks points.
"""

from __future__ import annotations

from collections.abc import Sequence

from idds.workflowv2.workflow import Condition, Workflow

from epic_wfms.wfms.idds.works import EpicPandaWork
from epic_wfms.wfms.panda.errors import TaskParamsError


def calibration_loop(calibration: dict, reconstruction: dict | Sequence[dict],
                     tolerance: float, name: str | None = None,
                     constant_argument: str | None = "--previous",
                     reco_constant_argument: str | Sequence[str | None] | None = None,
                     max_iterations: int | None = None, accept_exhausted: bool = False,
                     ) -> Workflow:
    """Calibrate until ``residual <= tolerance`` (loop), then reconstruct with the result.
    At most ``max_iterations`` iterations: then the reconstruction starts with the last
    constant if ``accept_exhausted``, else nothing after the loop runs.

    Each iteration's payload gets the previous iteration's constant as
    ``<constant_argument>=<value>``; the reconstruction gets the converged one as
    ``<reco_constant_argument>=<value>`` when that is given. ``reconstruction`` may be
    several tasks that all start when the calibration converged (the templates' steps after
    a loop: alignment and reconstruction), each with its own ``reco_constant_argument``."""
    if tolerance <= 0:
        raise TaskParamsError(f"calibration tolerance {tolerance} is not positive",
                              why="the loop would never converge",
                              fix="give the residual a positive tolerance")
    downstream = [reconstruction] if isinstance(reconstruction, dict) else list(reconstruction)
    arguments = (list(reco_constant_argument) if isinstance(reco_constant_argument, list | tuple)
                 else [reco_constant_argument] * len(downstream))
    if not downstream or len(arguments) != len(downstream):
        raise TaskParamsError(f"{len(downstream)} reconstruction tasks, {len(arguments)} "
                              "constant arguments",
                              why="each task after the loop needs its own (or None)",
                              fix="give one reco_constant_argument per reconstruction task")
    workflow = Workflow(name=name or f"{calibration['taskName']}.loop")
    calib = EpicPandaWork(calibration, tolerance=tolerance, constant_argument=constant_argument,
                          looped=True, max_iterations=max_iterations,
                          accept_exhausted=accept_exhausted)
    workflow.add_work(calib, initial=True)
    for params, argument in zip(downstream, arguments, strict=True):
        reco = EpicPandaWork(params, constant_argument=argument)
        workflow.add_work(reco)
        workflow.add_condition(Condition(cond=calib.is_converged, true_work=reco))
    workflow.add_loop_condition(Condition(cond=calib.is_not_converged))
    # iDDS carries the ``constant`` a finished iteration reported (its output_data) to the
    # next iteration's work as ``user_constant``; the work passes it to the payload
    workflow.set_global_parameters({"user_constant": None})
    return workflow


def process_when_validated(upstream: dict, downstream: dict,
                           name: str | None = None) -> Workflow:
    """Run ``downstream`` only after ``upstream`` finished and validated files, on those
    files only: iDDS carries the upstream's ``validated_files`` (its output_data) to the
    downstream work as ``user_validated_files``, which maps and submits only those."""
    workflow = Workflow(name=name or f"{upstream['taskName']}.validated")
    up, down = EpicPandaWork(upstream), EpicPandaWork(downstream, only_validated=True)
    workflow.add_work(up, initial=True)
    workflow.add_work(down)
    workflow.add_condition(Condition(cond=up.is_validated, true_work=down))
    workflow.set_global_parameters({"user_validated_files": None})
    return workflow


def hyperparameter_optimisation(training: dict, search_space: dict, max_points: int = 20,
                                points_per_iteration: int = 4) -> dict:
    """An iDDS HPO request: the search space and the training task (one job per point).

    ``search_space`` maps a hyperparameter to ``{"type": "float"|"int"|"categorical", ...}``
    as iDDS's HPO service (``idds.client.hpoclient``) expects; the training task's command
    gets each point through ``%HPO_POINT`` and reports its loss.
    """
    if not search_space:
        raise TaskParamsError("HPO without a search space",
                              fix="give at least one hyperparameter range")
    return {"name": f"{training['taskName']}.hpo", "method": "bayesian",
            "opt_space": search_space, "max_points": max_points,
            "num_points_per_iteration": points_per_iteration,
            "task_parameters": training}
