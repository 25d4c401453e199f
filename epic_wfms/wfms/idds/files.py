"""The files of an iDDS work whose input is a Rucio dataset, as iDDS's contents.

iDDS keeps, per processing, *input/output maps*: one map per unit of work, its input file(s)
and the output they become (``contents`` rows of the work's input and output collections).
For an ePIC work the unit is a file of the input dataset: JEDI makes one job per file (or per
``nFilesPerJob`` files), the job that read the file produces its output. The output content
is named after the input file (as DOMA's works do: the poller finds a job's map by the input
file it read); the real output file names and the job's result go into its metadata.

Runs inside iDDS's daemons (their venv: idds-common, rucio-clients, panda-client; no
epic-wfms dependencies), with ``RUCIO_CONFIG`` naming the Rucio server and account.
"""

from __future__ import annotations

from urllib.parse import quote

from idds.common.constants import ContentStatus, ContentType


def input_dataset(params: dict) -> str | None:
    """The task's primary input dataset (``scope:name``): prun's ``dsForIN`` or the first
    input item of ``jobParameters``; None for a task without input (``noInput``)."""
    if params.get("dsForIN"):
        return str(params["dsForIN"]).split(",")[0]
    for item in params.get("jobParameters") or []:
        if item.get("param_type") == "input" and item.get("dataset"):
            return str(item["dataset"])
    return None


def split_did(did: str, default_scope: str = "epic") -> tuple[str, str]:
    """``scope:name`` (a trailing ``/`` of a container dropped); ePIC names without a scope
    start with it (``epic.…``), else ``default_scope``."""
    did = did.rstrip("/")
    if ":" in did:
        scope, name = did.split(":", 1)
        return scope, name
    head = did.split(".")[0]
    return (head if head == default_scope else default_scope), did


def restrict_input_files(params: dict, names: list[str]) -> dict:
    """The task reading only ``names`` of its input dataset: JEDI's ``files`` on the input
    item (what prun's ``--inputFileList`` sets; JEDI's ContentsFeeder takes only those)."""
    dataset = input_dataset(params)
    out = {**params, "jobParameters": [dict(i) for i in params.get("jobParameters") or []]}
    for item in out["jobParameters"]:
        if item.get("param_type") == "input" and item.get("dataset") == dataset:
            item["files"] = list(names)
            return out
    for item in out["jobParameters"]:  # prun: the input item names the dataset as given
        if item.get("param_type") == "input":
            item["files"] = list(names)
    return out


def append_argument(params: dict, text: str) -> dict:
    """The task's payload command with ``text`` appended (prun's ``-p "…"`` block, or the
    job parameters' end for a plain command)."""
    items = [dict(i) for i in params.get("jobParameters") or []]
    opened = next((n for n, i in enumerate(items) if i.get("value") == '-p "'), None)
    if opened is not None:
        close = next(n for n in range(opened + 1, len(items)) if items[n].get("value") == '"')
        items.insert(close, {"type": "constant", "value": quote(f" {text}"), "padding": False})
    else:
        items.append({"type": "constant", "value": text})
    return {**params, "jobParameters": items}


def rename_outputs(params: dict, suffix: str) -> dict:
    """The task of another iteration of the same work: its name and its output and log
    datasets (and the file names made from them) carry ``suffix``."""
    def renamed(name: str) -> str:
        return f"{name[:-1]}{suffix}/" if name.endswith("/") else f"{name}{suffix}"

    task = params["taskName"].rstrip("/")
    out = {**params, "taskName": renamed(params["taskName"])}
    items = [_renamed_item(item, renamed, task) for item in params.get("jobParameters") or []]
    # file names the command line spells out (prun's ``-o`` map of outputs to their names)
    values = {str(old["value"]): new["value"] for old, new in
              zip(params.get("jobParameters") or [], items, strict=True)
              if old.get("param_type") == "output" and old.get("value") != new.get("value")}
    for item in items:
        if item.get("type") == "constant" and item.get("param_type") is None:
            for old_value, new_value in values.items():
                item["value"] = str(item["value"]).replace(old_value, new_value)
    out["jobParameters"] = items
    if isinstance(params.get("log"), dict):
        out["log"] = _renamed_item(params["log"], renamed, task)
    return out


def _renamed_item(item: dict, renamed, task: str) -> dict:
    """An output or log item of the renamed task: its dataset, and the file names made from
    the dataset's name or (named by the task: ``taskparams.complete_for_site``) the task's."""
    if item.get("param_type") not in ("output", "log"):
        return dict(item)
    new = dict(item)
    for key in ("dataset", "container"):
        if new.get(key):
            new[key] = renamed(new[key])
    base = str(item.get("dataset", "")).split(":")[-1].rstrip("/")
    value = str(new.get("value", ""))
    if base and base in value:
        new["value"] = value.replace(base, renamed(base).rstrip("/"), 1)
    elif task and value.startswith(f"{task}."):
        new["value"] = renamed(task) + value[len(task):]
    return new


def file_content(coll_id: int, scope: str, name: str, size: int | None = None,
                 adler32: str | None = None, metadata: dict | None = None) -> dict:
    """One content as iDDS's ``get_new_contents`` takes it."""
    return {"coll_id": coll_id, "scope": scope, "name": name, "bytes": int(size or 0),
            "adler32": adler32 or "", "min_id": 0, "max_id": 0,
            "content_type": ContentType.File, "status": ContentStatus.New,
            "substatus": ContentStatus.New, "content_metadata": dict(metadata or {})}


def mapped_names(mapped_input_output_maps: dict) -> set[str]:
    """Input file names iDDS already holds maps for."""
    names = set()
    for io_map in (mapped_input_output_maps or {}).values():
        for content in io_map.get("inputs") or []:
            names.add(content["name"])
        for content in io_map.get("outputs") or []:  # maps loaded with only_outputs=True
            names.add(content["name"])
    return names


def dataset_files(scope: str, name: str) -> tuple[list[dict], bool]:
    """The dataset's files in Rucio (``list_files``) and whether it is still open. A
    dataset Rucio does not know (yet) has no files and may still come: the work waits for
    it (JEDI, given the task, decides about a dataset that never appears)."""
    from rucio.client import Client
    from rucio.common.exception import DataIdentifierNotFound

    client = Client()
    try:
        files = list(client.list_files(scope, name))
    except DataIdentifierNotFound:
        return [], True
    is_open = bool(client.get_metadata(scope, name).get("is_open"))
    return files, is_open


def new_maps(files: list[dict], mapped: dict, input_coll, output_coll,
             allowed: set[str] | None = None) -> dict:
    """One new map per file not yet mapped (and in ``allowed``, when given), numbered after
    the existing ones."""
    known = mapped_names(mapped)
    next_id = max([int(k) for k in (mapped or {})] or [0]) + 1
    maps = {}
    for spec in sorted(files, key=lambda f: f["name"]):
        if spec["name"] in known or (allowed is not None and spec["name"] not in allowed):
            continue
        maps[next_id] = {
            "inputs": [file_content(input_coll.coll_id, spec["scope"], spec["name"],
                                    spec.get("bytes"), spec.get("adler32"))],
            "outputs": [file_content(output_coll.coll_id, output_coll.scope, spec["name"])],
            "logs": [], "inputs_dependency": []}
        next_id += 1
    return maps
