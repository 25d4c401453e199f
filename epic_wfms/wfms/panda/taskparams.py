"""JEDI task-parameter dictionaries for ePIC work (the format ``panda-client`` submits).

Input/output items are made by panda-client's own ``MiscUtils.makeJediJobParam`` (as prun
does), so the dataset/template shapes are the client's. One prompt task per E1 site per run
reads the run's open subset dataset ``epic:swf.<run>.E1_<site>`` file by file and keeps
running until the dataset is closed (``runUntilClosed``); a merge task per site merges the
prompt outputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pandaclient import MiscUtils

from epic_wfms.model import naming
from epic_wfms.wfms.panda.errors import TaskParamsError

VO = "epic"
PROMPT_PROCESSING = "epic_prompt"  # processingType the ePIC TaskRefiner treats as streaming
MERGE_PROCESSING = "epic_merge"
# prodSourceLabel per activity: production work is "managed" (needs the production role),
# tests "test" (ignored by production monitoring), users' own work "user".
SOURCE_LABELS = {"prompt": "managed", "merge": "managed", "production": "managed",
                 "test": "test", "user": "user"}
REQUIRED = ("taskName", "userName", "vo", "prodSourceLabel", "taskType", "architecture",
            "transUses", "transHome", "transPath", "jobParameters", "log")


@dataclass(frozen=True)
class TaskOptions:
    """Where and how the task runs: resources, image, brokerage constraints, priority."""

    user_name: str = "Epic Production"
    working_group: str = "EIC"
    container_image: str | None = "docker://eicweb/eic_xl:nightly"
    cores: int = 1
    ram_mb_per_core: int = 2000
    walltime_s: int | None = 3600
    site: str | None = None  # one PanDA queue; None = JEDI brokerage decides
    included_sites: tuple[str, ...] = ()
    excluded_sites: tuple[str, ...] = ()
    priority: int = 900
    express: bool = False  # panda-client's --express: spends the express quota first
    max_attempt: int = 3
    architecture: str = "x86_64-el9"
    activity: str = "prompt"
    extra: dict = field(default_factory=dict)


def prompt_task(run_number: int, site: str, options: TaskOptions | None = None,
                command: str = "python -m epic_wfms.wfms.payloads.reco") -> dict:
    """Reconstruction of a run's STFs at one E1 (``site`` e.g. ``E1_BNL``), one STF per job."""
    o = options or TaskOptions()
    in_ds = f"{naming.SCOPE}:{naming.site_dataset(run_number, site)}"
    out_ds = f"{in_ds}.reco"
    params = _base(f"{in_ds.split(':')[1]}.reco", o, PROMPT_PROCESSING, "epic-reco", out_ds)
    params.update(nFilesPerJob=1, runUntilClosed=True)
    params["jobParameters"] = [
        {"type": "constant", "value": command},
        *_items(MiscUtils.makeJediJobParam("${IN}", in_ds, "input", hidden=True, expand=True)),
        {"type": "constant", "value": "--input=${IN} --output=${OUTPUT0}"},
        *_items(MiscUtils.makeJediJobParam(f"{in_ds.split(':')[1]}.reco{_task_id(o)}._${{SN}}.json",
                                           out_ds, "output", hidden=True)),
    ]
    return params


def merge_task(run_number: int, site: str, options: TaskOptions | None = None,
               files_per_merge: int = 10,
               command: str = "python -m epic_wfms.wfms.payloads.merge") -> dict:
    """Merge of a site's prompt outputs, ``files_per_merge`` per job, after the run closes."""
    o = options or TaskOptions(activity="merge")
    in_ds = f"{naming.SCOPE}:{naming.site_dataset(run_number, site)}.reco"
    out_ds = f"{naming.SCOPE}:{naming.site_dataset(run_number, site)}.merged"
    params = _base(f"{naming.site_dataset(run_number, site)}.merge", o, MERGE_PROCESSING,
                   "epic-merge", out_ds)
    params["nFilesPerJob"] = files_per_merge
    params["jobParameters"] = [
        {"type": "constant", "value": command},
        *_items(MiscUtils.makeJediJobParam("${IN}", in_ds, "input", hidden=True, expand=True)),
        {"type": "constant", "value": "--output=${OUTPUT0} ${IN/L/S}"},
        *_items(MiscUtils.makeJediJobParam(
            f"{naming.site_dataset(run_number, site)}.merge{_task_id(o)}._${{SN}}.json",
            out_ds, "output", hidden=True)),
    ]
    return params


def _base(task_name: str, o: TaskOptions, processing: str, transformation: str,
          out_ds: str) -> dict:
    if o.activity not in SOURCE_LABELS:
        raise TaskParamsError(f"unknown activity {o.activity!r}",
                              why=f"each activity maps to a prodSourceLabel: {SOURCE_LABELS}",
                              fix="use one of " + ", ".join(SOURCE_LABELS))
    params: dict = {
        "taskName": task_name, "userName": o.user_name, "vo": VO,
        "prodSourceLabel": SOURCE_LABELS[o.activity], "workingGroup": o.working_group,
        "taskType": "prod" if SOURCE_LABELS[o.activity] == "managed" else "anal",
        "processingType": processing, "taskPriority": o.priority,
        "architecture": o.architecture, "transUses": "", "transHome": "",
        "transPath": transformation, "coreCount": o.cores, "ramCount": o.ram_mb_per_core,
        "ramCountUnit": "MBPerCore", "maxAttempt": o.max_attempt,
        "log": {"type": "template", "param_type": "log", "dataset": f"{out_ds}.log",
                "container": f"{out_ds}.log",
                "value": f"{out_ds.split(':')[1]}.log{_task_id(o)}.${{SN}}.log.tgz"},
    }
    if o.container_image:
        params["container_name"] = o.container_image
    if o.walltime_s:
        params["maxWalltime"] = o.walltime_s
    if o.site:
        params["site"] = o.site
    if o.included_sites:
        params["includedSite"] = list(o.included_sites)
    if o.excluded_sites:
        params["excludedSite"] = list(o.excluded_sites)
    if o.express:
        params["specialHandling"] = "express"
    params.update(o.extra)
    return params


GENERIC_TRANSFORMATION = "runGen-00-00-02"  # PanDA's generic container transformation


def complete_rendered(params: dict, user_name: str = TaskOptions.user_name) -> dict:
    """A prun-style dictionary (as ``template render --target panda`` makes it) lacks what
    DEFT (production) or the server's user interface (analysis) adds before JEDI reads it:
    the owner, the task type and the transformation. Keys already set are kept."""
    managed = params.get("prodSourceLabel") == "managed"
    return {"userName": user_name, "taskType": "prod" if managed else "anal",
            "transPath": GENERIC_TRANSFORMATION, **params}


#: what runs a prun-format job where the site's transformation runs its arguments
PRUN_RUNNER = "python -m epic_wfms.wfms.payloads.prun"
_TASK_ID = ".$JEDITASKID"


def complete_for_site(params: dict, queues: dict[str, str], transformation: str,
                      container_image: str | None,
                      user_name: str = TaskOptions.user_name) -> dict:
    """A rendered (prun-format) task completed (``complete_rendered``) for this
    installation's PanDA, as ``wfms.panda`` describes it:

    - the E1 sites it names (``site``, ``includedSite``, ``excludedSite``) become their PanDA
      queues (``queues``: E1 site -> queue; other names are taken as queues already);
    - ``transformation`` other than PanDA's runGen is ePIC's, which runs its arguments as the
      command: the job runs ``epic_wfms.wfms.payloads.prun`` (prun's job format: inputs,
      command, outputs) and runGen's pre/post-processing steps (``multiStepExec``) go;
    - ``container_image`` None (the worker node's environment): no container;
    - production (``managed``) output and log file names get the task name where prun puts
      ``$JEDITASKID``, which PanDA fills in for analysis jobs only."""
    out = complete_rendered(params, user_name)
    for key in ("site", "includedSite", "excludedSite"):
        value = out.get(key)
        if isinstance(value, str):
            out[key] = queues.get(value, value)
        elif value:
            out[key] = [queues.get(v, v) for v in value]
    items = [dict(i) for i in out.get("jobParameters") or []]
    if transformation != GENERIC_TRANSFORMATION:
        out["transPath"] = transformation
        out.pop("multiStepExec", None)
        items.insert(0, {"type": "constant", "value": PRUN_RUNNER})
    if container_image is None:
        out.pop("container_name", None)
        out.get("multiStepExec", {}).pop("containerOptions", None)
    if out.get("prodSourceLabel") == "managed":
        items, log = _named_by_task(out["taskName"].rstrip("/"), items, out.get("log"))
        if log is not None:
            out["log"] = log
    out["jobParameters"] = items
    return out


def _named_by_task(task: str, items: list[dict], log: dict | None
                   ) -> tuple[list[dict], dict | None]:
    """Output file names ``<prefix>.$JEDITASKID.<rest>`` -> ``<task>.<rest>`` (and in the
    constants that name them: prun's ``-o`` map); the log's ``.$JEDITASKID`` dropped (its
    name already holds the task's)."""
    renamed: dict[str, str] = {}
    for item in items:
        value = str(item.get("value", ""))
        if item.get("param_type") == "output" and _TASK_ID in value:
            renamed[value] = task + value[value.index(_TASK_ID) + len(_TASK_ID):]
            item["value"] = renamed[value]
    for item in items:
        if item.get("type") == "constant" and item.get("param_type") is None:
            for old, new in renamed.items():
                item["value"] = str(item["value"]).replace(old, new)
    if isinstance(log, dict) and _TASK_ID in str(log.get("value", "")):
        log = {**log, "value": str(log["value"]).replace(_TASK_ID, "", 1)}
    return items, log


def _task_id(o: TaskOptions) -> str:
    """``.$JEDITASKID`` in output file names of analysis/test tasks (the server writes the
    task id into their names); production (``managed``) names get no placeholder: PanDA
    substitutes it only for non-managed jobs (ATLAS's DEFT writes the id in itself), and a
    literal ``$JEDITASKID`` would end up in the file name. Production output datasets are
    per run and site, so their names are unique without it."""
    return "" if SOURCE_LABELS[o.activity] == "managed" else ".$JEDITASKID"


def _items(item: dict | list) -> list[dict]:
    return item if isinstance(item, list) else [item]


def validate(params: dict) -> dict:
    """Refuse, before any server call, a dictionary JEDI would break (missing keys, bad VO)."""
    missing = [k for k in REQUIRED if k not in params]
    if missing:
        raise TaskParamsError(f"task {params.get('taskName', '?')!r} lacks {missing}",
                              why="JEDI's TaskRefiner reads these keys; the task would be broken",
                              fix="build the dictionary with epic_wfms.wfms.panda.taskparams")
    if params["vo"] != VO:
        raise TaskParamsError(f"task {params['taskName']!r} has vo={params['vo']!r}",
                              why=f"ePIC tasks run under VO {VO!r} (its refiner and quotas)",
                              fix=f"set vo={VO!r}")
    if not any(i.get("param_type") == "output" for i in params["jobParameters"]
               if isinstance(i, dict)) and not params.get("noOutput"):
        raise TaskParamsError(f"task {params['taskName']!r} has no output template",
                              why="every ePIC job writes an output dataset",
                              fix="add an output item (MiscUtils.makeJediJobParam)")
    return params


def validate_all(task_params: Iterable[dict]) -> list[dict]:
    return [validate(p) for p in task_params]
