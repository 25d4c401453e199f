"""Local target: the plan of jobs the embedded backend's workflow runner executes.

``render_local`` only describes (for --dry-run and `template render --target local`);
``epic_wfms.templates.workflow_runner.run_local`` runs it.
"""

from __future__ import annotations

from typing import Any

from epic_wfms.templates.schema import RenderedWorkflow


def render_local(workflow: RenderedWorkflow) -> dict[str, Any]:
    steps = []
    for step in workflow.steps:
        primary = [i for i in step.inputs if i.role == "primary"]
        steps.append({
            "step": step.name, "depends_on": step.depends_on,
            "image": step.payload.image, "command": step.payload.command,
            "jobs": (f"one per {primary[0].files_per_job} input file(s)"
                     if primary and primary[0].files_per_job else
                     "one over all inputs" if primary else step.jobs),
            "inputs": {i.role: i.datasets for i in step.inputs},
            "outputs": [o.dataset for o in step.outputs],
            "conditions": [f"{c.kind} {c.subject}" for c in step.when],
            "loop": step.loop.model_dump() if step.loop else None,
            "validate": step.validate_cmd,
        })
    return {"template": workflow.template, "rendered_hash": workflow.rendered_hash,
            "retry": workflow.campaign.retry.model_dump(), "steps": steps}
