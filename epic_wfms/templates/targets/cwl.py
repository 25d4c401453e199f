"""CWL export and import, for the subset PanDA's ``pchain`` accepts (R6.1).

That subset is a CWL ``Workflow`` whose steps all ``run: prun`` with the inputs
``opt_inDS`` (a workflow input or ``<step>/outDS``), ``opt_inDsType``, ``opt_secondaryDSs``
and ``opt_secondaryDsTypes``, ``opt_exec``, ``opt_args`` (prun options) and
``opt_containerImage``, and one output ``outDS``. Export writes it from a rendered
workflow; import turns such a file back into an epic-wfms template (YAML mapping), so a
pchain workflow can be rendered, run locally or sent to any target.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import yaml

from epic_wfms.templates.errors import TemplateError
from epic_wfms.templates.schema import RenderedWorkflow, Step
from epic_wfms.templates.targets.panda import _architecture, image_url

CWL_VERSION = "v1.0"
DEFAULT_IMAGE = "eicweb/eic_xl:nightly"  # a step without opt_containerImage: the ePIC image
_SAFE = re.compile(r"[^a-z0-9_]+")


def _prun_options(step: Step) -> str:
    """prun options of the step that pchain passes through ``opt_args``."""
    args = ["--outputs", ",".join(o.file for o in step.outputs)]
    primary = [i for i in step.inputs if i.role == "primary"]
    if primary and primary[0].files_per_job:
        args += ["--nFilesPerJob", str(primary[0].files_per_job)]
    if not primary:
        args += ["--nJobs", str(step.jobs)]
        if step.events_per_job:
            args += ["--nEventsPerJob", str(step.events_per_job)]
    secondary = [i for i in step.inputs if i.role == "secondary"]
    if secondary:
        streams = [f"IN{k + 2}:{item.files_per_job or 1}:%{{SECDS{k + 1}}}"
                   for k, item in enumerate(secondary)]
        args += ["--secondaryDSs", ",".join(streams)]
    res = step.resources
    if res.cores > 1:
        args += ["--nCore", str(res.cores)]
    args += ["--memory", str(res.memory_mb), "--maxWalltime",
             str(-(-res.walltime_min // 60))]
    if _architecture(step):
        args += ["--architecture", _architecture(step)]
    if step.sites:
        args += ["--site", ",".join(step.sites)]
    if step.excluded_sites:
        args += ["--excludedSite", ",".join(step.excluded_sites)]
    return shlex.join(args)


def _source(item_dataset: str, producers: dict[str, tuple[str, str]],
            inputs: dict[str, Any]) -> tuple[str, str | None]:
    """(CWL source, file type) for one dataset: an upstream step's outDS or an input."""
    if item_dataset in producers:
        step, file = producers[item_dataset]
        return f"{step}/outDS", file
    name = "ds_" + _SAFE.sub("_", item_dataset.split(":")[-1].lower()).strip("_")[:60]
    inputs[name] = {"type": "string", "default": item_dataset}
    return name, None


def export_cwl(workflow: RenderedWorkflow) -> str:
    """The workflow as a pchain CWL file (YAML text)."""
    producers = {o.dataset: (s.name, o.file) for s in workflow.steps for o in s.outputs}
    inputs: dict[str, Any] = {}
    steps: dict[str, Any] = {}
    consumed: set[str] = set()
    for step in workflow.steps:
        entry: dict[str, Any] = {}
        primary = [i for i in step.inputs if i.role == "primary"]
        secondary = [i for i in step.inputs if i.role == "secondary"]
        if primary:
            sources = [_source(d, producers, inputs) for d in primary[0].datasets]
            entry["opt_inDS"] = sources[0][0] if len(sources) == 1 else [s for s, _ in sources]
            types = [t for _, t in sources if t]
            if types:
                entry["opt_inDsType"] = {"default": types[0]}
            consumed |= {s.split("/")[0] for s, _ in sources}
        if secondary:
            sources = [_source(d, producers, inputs) for i in secondary for d in i.datasets]
            entry["opt_secondaryDSs"] = [s for s, _ in sources]
            entry["opt_secondaryDsTypes"] = {"default": [t or "" for _, t in sources]}
            consumed |= {s.split("/")[0] for s, _ in sources}
        entry["opt_exec"] = {"default": step.payload.command}
        entry["opt_args"] = {"default": _prun_options(step)}
        entry["opt_containerImage"] = {"default": image_url(step.payload.image)}
        after = [d for d in step.depends_on if d not in consumed]
        step_doc = {"run": "prun", "in": entry, "out": ["outDS"]}
        if after or step.when or step.loop or step.validate_cmd:
            step_doc["doc"] = _doc(step, after)
        steps[step.name] = step_doc
    leaves = [s.name for s in workflow.steps if s.name not in consumed]
    document = {
        "cwlVersion": CWL_VERSION, "class": "Workflow",
        "doc": f"{workflow.template} {workflow.template_version} "
               f"(rendered {workflow.rendered_hash[:12]}) by epic-wfms",
        "requirements": {"MultipleInputFeatureRequirement": {}},
        "inputs": inputs,
        "outputs": {f"outDS_{n}": {"type": "string", "outputSource": f"{n}/outDS"}
                    for n in leaves},
        "steps": steps,
    }
    return yaml.safe_dump(document, sort_keys=False, width=100)


def _doc(step: Step, after: list[str]) -> str:
    """What pchain's subset cannot say, kept readable for the importer and for people."""
    parts = []
    if after:
        parts.append("after: " + ",".join(after))
    for cond in step.when:
        names = [d for d in step.depends_on
                 if d == cond.subject or d.startswith(f"{cond.subject}_")]
        parts += [f"when: {cond.kind} {n}" for n in names or [cond.subject]]
    if step.loop:
        parts.append(f"loop: until `{step.loop.check}` succeeds, at most "
                     f"{step.loop.max_iterations} ({step.loop.on_exhausted})")
    if step.validate_cmd:
        parts.append(f"validate: `{step.validate_cmd}`")
    return "; ".join(parts)


# ---------------------------------------------------------------- import


def _default(value: Any) -> Any:
    return value.get("default") if isinstance(value, dict) else value


def _parse_args(text: str) -> dict[str, str]:
    tokens = shlex.split(text or "")
    options: dict[str, str] = {}
    for index, token in enumerate(tokens):
        if not token.startswith("--"):
            continue
        key, sep, value = token.partition("=")
        if sep:
            options[key] = value
        else:
            nxt = tokens[index + 1] if index + 1 < len(tokens) else ""
            options[key] = "" if nxt.startswith("--") else nxt
    return options


_CWL_TYPES = {"string": "string", "int": "integer", "long": "integer", "float": "number",
              "double": "number", "boolean": "boolean", "string[]": "list"}


def _parameter(name: str, raw: Any, given: dict[str, Any]) -> dict[str, Any]:
    """A CWL workflow input as a typed template parameter (pchain's --yaml gives values)."""
    declared = raw.get("type", "string") if isinstance(raw, dict) else raw
    if isinstance(declared, str) and declared.endswith("?"):
        declared = declared[:-1]
    kind = _CWL_TYPES.get(str(declared), "string")
    spec: dict[str, Any] = {"type": kind, "help": f"CWL workflow input {name}"}
    default = given.get(name, _default(raw) if isinstance(raw, dict) else None)
    if default is None:
        spec.update(required=True, example=f"user.jdoe:{name}" if kind == "string" else 1)
    else:
        spec["default"] = default
    return spec


def import_cwl(text: str, name: str = "imported_cwl",
               input_values: dict[str, Any] | None = None) -> dict[str, Any]:
    """A pchain CWL workflow -> an epic-wfms template (mapping; dump it as YAML).

    The workflow's inputs become typed parameters (defaults from the CWL file or from
    ``input_values``, pchain's ``--yaml`` file); a step reading one reads
    ``{{ <input> }}``."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise TemplateError("the CWL file is not valid YAML", str(error),
                            "fix its syntax") from None
    if not isinstance(document, dict) or document.get("class") != "Workflow":
        raise TemplateError("the CWL file is not a Workflow", "pchain takes class: Workflow",
                            "export a Workflow, not a CommandLineTool")
    raw_inputs = document.get("inputs") or {}
    if isinstance(raw_inputs, list):  # the list form: [{id: name, default: ...}]
        raw_inputs = {str(i.get("id")): i for i in raw_inputs if isinstance(i, dict)}
    given = input_values or {}
    unknown = sorted(set(given) - set(raw_inputs))
    if unknown:
        raise TemplateError(f"values for {', '.join(unknown)}, which the CWL workflow does "
                            "not declare", "inputs: lists "
                            + (", ".join(raw_inputs) or "none"), "remove or rename them")
    params = {}
    inputs = {}  # CWL input -> template parameter
    for input_name, raw in raw_inputs.items():
        param = _SAFE.sub("_", input_name.lower()).strip("_") or "input"
        if param in ("user", "campaign_name") or not param[0].isalpha():
            param = f"in_{param}"
        params[param] = _parameter(input_name, raw, given)
        inputs[input_name] = param
    steps = []
    for step_name, step in (document.get("steps") or {}).items():
        run = str(step.get("run", ""))
        if run not in ("prun", "prun.cwl"):
            raise TemplateError(f"CWL step {step_name} runs {run!r}",
                                "epic-wfms imports the pchain subset: steps run prun",
                                "rewrite the step as a prun step")
        steps.append(_import_step(step_name, step, inputs))
    return {"template": name, "version": "1.0.0", "use_case": "analysis",
            "description": str(document.get("doc", "imported from CWL")),
            "parameters": {"campaign_name": {"type": "string", "default": "imported"},
                           "user": {"type": "string", "required": True, "example": "jdoe"},
                           **params},
            "campaign": {"name": "{{ campaign_name }}", "activity": "analysis",
                         "user": "{{ user }}"},
            "steps": steps}


def _reference(source: str, file_type: str | None, inputs: dict[str, str]) -> dict[str, Any]:
    if "/" in source:
        ref: dict[str, Any] = {"from": source.split("/")[0]}
        if file_type:
            ref["datatype"] = _datatype(file_type)
        return ref
    if source not in inputs:
        raise TemplateError(f"CWL step input {source!r} is not a workflow input",
                            "opt_inDS names a workflow input or <step>/outDS",
                            "declare it under inputs:")
    return {"dataset": "{{ " + inputs[source] + " }}"}


def _datatype(file: str) -> str:
    return _SAFE.sub("_", file.split(".")[0].lower()).strip("_") or "data"


def _import_step(name: str, step: dict[str, Any], inputs: dict[str, str]) -> dict[str, Any]:
    entry = step.get("in") or {}
    options = _parse_args(_default(entry.get("opt_args", "")))
    files = [f for f in options.get("--outputs", "").split(",") if f]
    if not files:
        raise TemplateError(f"CWL step {name} declares no --outputs in opt_args",
                            "every step writes at least one output file",
                            "add --outputs FILE to opt_args")
    image = str(_default(entry.get("opt_containerImage", "")) or DEFAULT_IMAGE)
    result: dict[str, Any] = {
        "name": name,
        "payload": {"image": image.removeprefix("docker://"), "command": _default(
            entry.get("opt_exec", "")), "origin": "user", "source": f"cwl:{name}"},
        "outputs": [{"datatype": _datatype(f), "file": f} for f in files],
        "resources": {"memory_mb": int(options.get("--memory") or 2000),
                      "cores": int(options.get("--nCore") or 1),
                      "walltime_min": int(options.get("--maxWalltime") or 1) * 60,
                      "gpus": 1 if "&" in options.get("--architecture", "") else 0},
    }
    in_ds = entry.get("opt_inDS")
    if in_ds:
        sources = in_ds if isinstance(in_ds, list) else [in_ds]
        file_type = _default(entry.get("opt_inDsType"))
        ref = _reference(sources[0], file_type, inputs)
        if options.get("--nFilesPerJob"):
            ref["files_per_job"] = int(options["--nFilesPerJob"])
        result["inputs"] = [ref]
    else:
        result["jobs"] = int(options.get("--nJobs") or 1)
        if options.get("--nEventsPerJob"):
            result["events_per_job"] = int(options["--nEventsPerJob"])
    secondary = entry.get("opt_secondaryDSs") or []
    types = _default(entry.get("opt_secondaryDsTypes")) or [None] * len(secondary)
    streams = options.get("--secondaryDSs", "").split(",")
    for k, (source, file_type) in enumerate(zip(secondary, types, strict=False)):
        ref = _reference(source, file_type or None, inputs)
        ref["role"] = "secondary"
        parts = streams[k].split(":") if k < len(streams) else []
        if len(parts) > 1 and parts[1].isdigit():
            ref["files_per_job"] = int(parts[1])
        result.setdefault("inputs", []).append(ref)
    for key, value in (("sites", "--site"), ("excluded_sites", "--excludedSite")):
        if options.get(value):
            result[key] = options[value].split(",")
    doc = str(step.get("doc", ""))
    after = re.search(r"after: ([\w,]+)", doc)
    if after:
        result["after"] = after.group(1).split(",")
    conditions = [{kind: subject} for kind, subject in re.findall(
        r"when: (input_ready|upstream_validated|calibration_ready) (\S+?)(?:;|$)", doc)]
    if conditions:
        result["when"] = conditions
    loop = re.search(r"loop: until `(.+?)` succeeds, at most (\d+) \((\w+)\)", doc)
    if loop:
        result["loop"] = {"check": loop.group(1), "max_iterations": int(loop.group(2)),
                          "on_exhausted": loop.group(3)}
    validate = re.search(r"validate: `(.+?)`", doc)
    if validate:
        result["validate"] = validate.group(1)
    return result
