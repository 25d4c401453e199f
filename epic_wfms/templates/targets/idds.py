"""iDDS target: a real ``idds.workflowv2`` Workflow of Works joined by Conditions.

Each step is a Work carrying the PanDA task parameters it runs (``parameters``); a step
starts when its upstream works are finished (``Condition``/``AndCondition`` on
``is_finished``, which also expresses 'upstream validated'); a loop step becomes a
sub-workflow of the step and its check, repeated while the check fails
(``add_loop_condition``), which is how iDDS iterates calibrations and HPO trials.
"""

from __future__ import annotations

import logging
from typing import Any

from idds.common.utils import json_dumps, json_loads
from idds.workflowv2.work import Work
from idds.workflowv2.workflow import AndCondition, Condition, Workflow

from epic_wfms.templates.schema import RenderedWorkflow, Step
from epic_wfms.templates.targets.panda import produced_containers, task_name, task_params

logging.getLogger("Workflow").setLevel(logging.WARNING)
logging.getLogger("WorkflowBase").setLevel(logging.WARNING)


def _work(step: Step, name: str, command: str, task: dict[str, Any] | None) -> Work:
    work = Work(executable=command, work_name=name, work_tag="epic", exec_type="panda",
                work_type=(step.loop and "iterative") or "processing",
                parameters={"task_parameters": task, "image": step.payload.image,
                            "resources": step.resources.model_dump(),
                            "conditions": [c.model_dump(exclude_none=True) for c in step.when]})
    work.task_name = name
    return work


def _step_unit(step: Step, task: dict[str, Any]) -> Any:
    """What the parent workflow holds for a step: its work, or the loop around it."""
    work = _work(step, task_name(step), step.payload.command, task)
    if not step.loop:
        return work
    check = _work(step, f"{task_name(step)}.check", step.loop.check, None)
    # iDDS loops have no iteration limit of their own: the check work carries it
    check.parameters = {**check.parameters, "max_iterations": step.loop.max_iterations,
                        "on_exhausted": step.loop.on_exhausted}
    loop = Workflow(name=f"{task_name(step)}.loop")
    loop.add_work(work, initial=True)
    loop.add_work(check)
    loop.add_condition(Condition(cond=work.is_finished, current_work=work, true_work=check))
    loop.add_loop_condition(Condition(cond=check.is_failed, current_work=check))
    return loop


def build_idds_workflow(workflow: RenderedWorkflow) -> Workflow:
    """The iDDS workflow object (submit it with idds.client)."""
    produced = produced_containers(workflow)
    root = Workflow(name=f"epic.{workflow.template}.{workflow.rendered_hash[:12]}")
    units: dict[str, Any] = {}
    for step in workflow.steps:
        unit = _step_unit(step, task_params(step, workflow, produced))
        root.add_work(unit, initial=not step.depends_on)
        units[step.name] = unit
        upstream = [units[d] for d in step.depends_on]
        if len(upstream) == 1:
            root.add_condition(Condition(cond=upstream[0].is_finished,
                                         current_work=upstream[0], true_work=unit))
        elif upstream:
            root.add_condition(AndCondition(conditions=[u.is_finished for u in upstream],
                                            true_works=[unit]))
    return root


def render_idds(workflow: RenderedWorkflow) -> dict[str, Any]:
    """JSON form of the iDDS workflow (idds.common.utils.json_dumps), plus a summary."""
    idds_workflow = build_idds_workflow(workflow)
    return {"name": idds_workflow.name, "workflow": json_dumps(idds_workflow),
            "works": [task_name(s) for s in workflow.steps],
            "loops": [task_name(s) for s in workflow.steps if s.loop]}


def load_idds_workflow(text: str) -> Workflow:
    return json_loads(text)
