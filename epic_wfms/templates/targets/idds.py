"""iDDS target: an ``idds.workflowv2`` Workflow iDDS runs, of ePIC works (``EpicPandaWork``).

Each step is an ``EpicPandaWork`` carrying the complete JEDI task parameters of the step as
the panda target renders them (``targets.panda.task_params`` completed by
``taskparams.complete_rendered``, or for the installation's sites by the ``complete``
function ``template submit`` passes: ``taskparams.complete_for_site``). Two shapes:

- **a loop** (the calibration template): the loop step starts the workflow and has a
  ``loop.tolerance``; every other step follows it (``calibration_ready``). The workflow is
  ``wfms.idds.workflows.calibration_loop``: iDDS repeats the loop step's work (each
  iteration its own PanDA task, given the previous iteration's constant as
  ``--previous=<value>``) while the residual its payload reports (``jobReport.json``) is
  above the tolerance (``is_not_converged``), then starts the following steps
  (``is_converged``). After ``loop.max_iterations`` iterations the loop stops: with
  ``on_exhausted: accept`` the following steps start with the last constant, with ``fail``
  none starts. A following step reads the loop's outputs as a secondary input in the
  other targets (``--calibration %IN2``); on iDDS it gets the converged constant instead,
  through the same option (``--calibration=<value>``). The loop's ``check`` command is the
  local runner's: on iDDS, iDDS decides.
- **no loop**: a DAG; a step starts when its upstream works finished (``is_finished``).

What iDDS cannot run is refused with what/why/fix (``IddsShapeError``, a ``TargetError``):
more than one loop, a loop without tolerance (iDDS decides on the residual, there is no
check command to run), a loop after other steps, a step after the loop that does not depend
on it alone, or reads the loop's outputs as its primary input. ``render_idds`` reports the
refusal (``unsupported``) so that rendering and checking every template still work;
``template submit --target idds`` refuses.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from idds.common.utils import json_dumps, json_loads
from idds.workflowv2.workflow import AndCondition, Condition, Workflow

from epic_wfms.templates.errors import TargetError
from epic_wfms.templates.schema import RenderedWorkflow, Step
from epic_wfms.templates.targets.panda import produced_containers, task_name, task_params
from epic_wfms.wfms.idds.workflows import calibration_loop
from epic_wfms.wfms.idds.works import EpicPandaWork
from epic_wfms.wfms.panda.taskparams import complete_rendered

logging.getLogger("Workflow").setLevel(logging.WARNING)
logging.getLogger("WorkflowBase").setLevel(logging.WARNING)

Complete = Callable[[dict[str, Any]], dict[str, Any]]
CONSTANT_ARGUMENT = "--previous"  # how each iteration gets the previous one's constant


class IddsShapeError(TargetError):
    """The rendered workflow has a shape iDDS cannot run."""


def _refuse(what: str, why: str, fix: str) -> IddsShapeError:
    return IddsShapeError(what, why, fix + "; or run it with --target local (or panda, one "
                          "task per step)")


def _loop_step(workflow: RenderedWorkflow) -> Step | None:
    """The loop step, checked for what iDDS can run; None for a workflow without loop."""
    loops = [s for s in workflow.steps if s.loop]
    if not loops:
        return None
    names = ", ".join(s.name for s in loops)
    if len(loops) > 1:
        raise _refuse(f"{workflow.template}: {len(loops)} loops ({names})",
                      "the iDDS target runs one loop (the workflow's loop condition)",
                      "keep one loop step")
    loop = loops[0]
    assert loop.loop is not None
    if loop.loop.tolerance is None:
        raise _refuse(f"{workflow.template}: the loop of step {loop.name} has no tolerance",
                      "iDDS decides a loop on the residual the payload reports "
                      "(jobReport.json) against loop.tolerance; it does not run the "
                      f"check command {loop.loop.check!r}",
                      "give loop.tolerance and make the payload report its residual")
    if loop.depends_on:
        raise _refuse(f"{workflow.template}: loop step {loop.name} follows "
                      f"{', '.join(loop.depends_on)}",
                      "iDDS repeats the whole loop workflow: the loop step must start it",
                      "make the loop step the first step")
    for step in workflow.steps:
        if step is not loop and step.depends_on != [loop.name]:
            raise _refuse(f"{workflow.template}: step {step.name} depends on "
                          f"{step.depends_on or 'nothing'}",
                          f"after a loop, iDDS starts the steps that follow the loop "
                          f"({loop.name}) when it converged, and nothing else",
                          f"make {step.name} depend on {loop.name} alone")
        if any(i.from_ == loop.name and i.role == "primary" for i in step.inputs):
            raise _refuse(f"{workflow.template}: step {step.name} reads the outputs of loop "
                          f"{loop.name} as its primary input",
                          "on iDDS a step after a loop gets the converged constant, not the "
                          "loop's files", "read them as role: secondary")
    return loop


def _after_loop(step: Step, loop: Step) -> tuple[Step, str | None]:
    """The step without the loop's outputs as input, and the option that took them in its
    command (``--calibration %IN2`` -> ``--calibration``: iDDS passes the converged constant
    as ``--calibration=<value>``); the other secondary streams renumbered."""
    secondary = [i for i in step.inputs if i.role == "secondary"]
    streams = {f"IN{n + 2}": i for n, i in enumerate(secondary)}
    fed = [name for name, i in streams.items() if i.from_ == loop.name]
    command, option = step.payload.command, None
    for name in fed:
        found = re.search(rf"\s(--?[A-Za-z][\w-]*)(?:=|\s+)%{name}\b", command)
        if found is None and re.search(rf"%{name}\b", command):
            raise _refuse(f"step {step.name}: its command uses %{name} (the outputs of loop "
                          f"{loop.name}) without an option before it",
                          "on iDDS the step gets the converged constant as "
                          "<option>=<value> in place of the loop's files",
                          f"write the command as '... --calibration %{name}'")
        if found is not None:
            command, option = command[:found.start()] + command[found.end():], found.group(1)
    kept = [i for i in secondary if i.from_ != loop.name]
    renumber = {old: f"IN{kept.index(i) + 2}" for old, i in streams.items() if i in kept}
    command = re.sub(r"%(IN\d+)\b", lambda m: f"%{renumber.get(m.group(1), m.group(1))}",
                     command)
    inputs = [i for i in step.inputs if i.from_ != loop.name]
    payload = step.payload.model_copy(update={"command": command})
    return step.model_copy(update={"inputs": inputs, "payload": payload}), option


def _task(step: Step, workflow: RenderedWorkflow, produced: dict[str, str],
          complete: Complete) -> dict[str, Any]:
    return complete(task_params(step, workflow, produced))


def build_idds_workflow(workflow: RenderedWorkflow, complete: Complete | None = None
                        ) -> Workflow:
    """The iDDS workflow of ``EpicPandaWork``s (submit it with ``IddsConnection.submit``);
    ``complete`` completes each step's rendered task for the installation (default:
    ``complete_rendered``). Raises ``IddsShapeError`` for what iDDS cannot run."""
    complete = complete or complete_rendered
    produced = produced_containers(workflow)
    name = f"epic.{workflow.template}.{workflow.rendered_hash[:12]}"
    loop = _loop_step(workflow)
    if loop is not None:
        assert loop.loop is not None and loop.loop.tolerance is not None
        following = [_after_loop(s, loop) for s in workflow.steps if s is not loop]
        if not following:
            raise _refuse(f"{workflow.template}: nothing follows loop {loop.name}",
                          "the iDDS loop workflow starts the steps after the loop when it "
                          "converged", "add the step that uses the result")
        return calibration_loop(
            _task(loop, workflow, produced, complete),
            [_task(s, workflow, produced, complete) for s, _ in following],
            tolerance=loop.loop.tolerance, name=name, constant_argument=CONSTANT_ARGUMENT,
            reco_constant_argument=[option for _, option in following],
            max_iterations=loop.loop.max_iterations,
            accept_exhausted=loop.loop.on_exhausted == "accept")
    root = Workflow(name=name)
    works: dict[str, EpicPandaWork] = {}
    for step in workflow.steps:
        work = EpicPandaWork(_task(step, workflow, produced, complete))
        root.add_work(work, initial=not step.depends_on)
        works[step.name] = work
        upstream = [works[d] for d in step.depends_on]
        if len(upstream) == 1:
            root.add_condition(Condition(cond=upstream[0].is_finished, true_work=work))
        elif upstream:
            root.add_condition(AndCondition(conditions=[u.is_finished for u in upstream],
                                            true_works=[work]))
    return root


def render_idds(workflow: RenderedWorkflow) -> dict[str, Any]:
    """JSON form of the iDDS workflow (idds.common.utils.json_dumps), plus a summary; for a
    workflow iDDS cannot run, ``unsupported`` says why (``template submit`` refuses it)."""
    summary = {"works": [task_name(s) for s in workflow.steps],
               "loops": [task_name(s) for s in workflow.steps if s.loop]}
    try:
        idds_workflow = build_idds_workflow(workflow)
    except IddsShapeError as error:
        return {"name": f"epic.{workflow.template}.{workflow.rendered_hash[:12]}",
                "workflow": None, **summary, "unsupported": str(error)}
    return {"name": idds_workflow.name, "workflow": json_dumps(idds_workflow), **summary}


def load_idds_workflow(text: str) -> Workflow:
    return json_loads(text)
