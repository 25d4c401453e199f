"""Submit a rendered workflow to a target through a small registry of submitters.

``local`` runs on the embedded backend. ``panda`` and ``idds`` render and record (dry run)
until a submitter is registered: ``register_submitter("panda", func)`` where ``func``
takes the list of PanDA task-parameter dictionaries (as ``Client.insertTaskParams`` takes
them) and returns what the server answered; for ``idds``, ``func`` takes ``[spec]``, the
idds target's rendering with the rendered workflow (``"rendered"``), and returns
``{"request_id": ...}`` (the installation's: ``installation.template_submitters``). A
workflow iDDS cannot run is refused (``targets.idds``). Every submission, dry or not, is stored with
its rendered workflow, template version and hashes (R1.12).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from epic_wfms.lifecycle.template import SubmissionStatus
from epic_wfms.store.database import Database
from epic_wfms.templates import records
from epic_wfms.templates.errors import TargetError
from epic_wfms.templates.loader import TemplateLibrary
from epic_wfms.templates.render import compile_template
from epic_wfms.templates.schema import RenderedWorkflow
from epic_wfms.templates.tags import TagCatalogue, default_tag_dir
from epic_wfms.templates.targets import TARGETS, render_target
from epic_wfms.templates.workflow_runner import LocalRunOptions, run_local

Submitter = Callable[[list[dict[str, Any]]], Any]
_SUBMITTERS: dict[str, Submitter] = {}


def register_submitter(target: str, submitter: Submitter) -> None:
    """Plug in the submitter of a remote target (e.g. PanDA's insertTaskParams)."""
    if target not in ("panda", "idds"):
        raise TargetError(f"cannot register a submitter for {target!r}",
                          "remote targets are panda and idds", "register 'panda' or 'idds'")
    _SUBMITTERS[target] = submitter


def render_for_submission(db: Database, library: TemplateLibrary, name: str,
                          values: dict[str, Any]) -> RenderedWorkflow:
    """Render with the store's record of used production tags (immutability guard)."""
    catalogue = TagCatalogue(default_tag_dir(library.directory), records.tag_usage_lookup(db))
    return compile_template(library, name, catalogue).render(values)


def submit(db: Database, workflow: RenderedWorkflow, target: str, dry_run: bool = False,
           local: LocalRunOptions | None = None,
           submitters: dict[str, Submitter] | None = None) -> dict[str, Any]:
    """``submitters``: this installation's remote targets (``backends.template_submitters``),
    taking precedence over those registered with ``register_submitter``."""
    if target not in TARGETS or target == "cwl":
        raise TargetError(f"cannot submit to {target!r}", "submit targets: local, panda, idds",
                          "use `template render --target cwl` to export CWL")
    if target == "local" and not dry_run:
        if local is None:
            raise TargetError("local submission without a work directory", "",
                              "give --workdir")
        return run_local(db, workflow, local)
    spec = render_target(workflow, target)
    if target == "idds" and spec.get("unsupported"):
        raise TargetError(f"iDDS cannot run this workflow: {spec['unsupported']}")
    submitter = {**_SUBMITTERS, **(submitters or {})}.get(target)
    if not dry_run and submitter is None:
        raise TargetError(f"no {target} submitter is configured in this installation",
                          f"epic-wfms renders {target} specs; sending them needs the "
                          f"{target} client set up", "use --dry-run to see what would be sent")
    status = SubmissionStatus.DRY_RUN if dry_run else SubmissionStatus.SUBMITTED
    submission_id = records.record_submission(db, workflow, target, dry_run, status=status)
    result: dict[str, Any] = {"submission_id": submission_id, "target": target,
                              "dry_run": dry_run, "status": status,
                              "rendered_hash": workflow.rendered_hash, "spec": spec}
    if not dry_run:
        payload = spec["tasks"] if target == "panda" else [
            {**spec, "rendered": workflow.model_dump(mode="json", by_alias=True)}]
        result["response"] = submitter(payload)
        if target == "panda" and isinstance(result["response"], list):
            records.link_panda_tasks(db, submission_id, [
                int(r["jedi_task_id"]) for r in result["response"]
                if isinstance(r, dict) and "jedi_task_id" in r])
        if target == "idds" and isinstance(result["response"], dict) \
                and result["response"].get("request_id") is not None:
            request_id = int(result["response"]["request_id"])
            records.link_idds_request(db, submission_id, request_id)
            result["idds_request_id"] = request_id
            result["next"] = f"epic-wfms idds status {request_id}"
    return result


def default_workdir(data_dir: Path, workflow: RenderedWorkflow) -> Path:
    """A fresh directory per local run (loops keep state in their job directories)."""
    base = Path(data_dir) / "templates" / f"{workflow.template}.{workflow.rendered_hash[:12]}"
    attempt = 1
    while (base.parent / f"{base.name}.{attempt}").exists():
        attempt += 1
    return base.parent / f"{base.name}.{attempt}"
