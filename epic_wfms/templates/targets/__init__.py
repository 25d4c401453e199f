"""Targets a rendered workflow becomes: PanDA task parameters, an iDDS workflow, CWL, or
jobs of the embedded (local) backend. ``render_target`` dispatches by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from epic_wfms.templates.errors import TargetError
from epic_wfms.templates.params import closest
from epic_wfms.templates.schema import RenderedWorkflow

TARGETS = ("panda", "idds", "cwl", "local")


def _renderer(target: str) -> Callable[[RenderedWorkflow], Any]:
    if target == "panda":
        from epic_wfms.templates.targets.panda import render_panda
        return render_panda
    if target == "idds":
        from epic_wfms.templates.targets.idds import render_idds
        return render_idds
    if target == "cwl":
        from epic_wfms.templates.targets.cwl import export_cwl
        return export_cwl
    if target == "local":
        from epic_wfms.templates.targets.local import render_local
        return render_local
    suggestion = closest(target, list(TARGETS))
    raise TargetError(f"unknown target {target!r}", "targets: " + ", ".join(TARGETS),
                      f"did you mean {suggestion}?" if suggestion else "pick one of them")


def render_target(workflow: RenderedWorkflow, target: str) -> Any:
    """The rendered workflow in the target's own form (JSON-able, or iDDS objects)."""
    return _renderer(target)(workflow)
