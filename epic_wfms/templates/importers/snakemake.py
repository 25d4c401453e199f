"""A Snakefile -> an epic-wfms template, read with Snakemake's own parser and DAG.

Snakemake loads the Snakefile with its config (its ``configfile:``, or the one given) and
builds the DAG of jobs for the default target, exactly as ``snakemake`` would run it. Each
rule with a ``shell:`` action becomes a step:

- a rule with a wildcard (``{sample}``) is scattered: ``foreach`` over a list parameter named
  after the wildcard whose default is the values Snakemake resolved (one instance each);
- files another rule writes become ``{from: RULE, datatype: ...}`` inputs (the first one is
  the job's ``%IN``, the others ``%IN2``, ``%IN3`` ...); files no rule writes are the
  workflow's own files, read from ``payloads/<path>`` (the payload directory a job gets:
  ``--payload-dir`` locally, the sandbox on PanDA);
- ``{output}`` names become the step's output files, ``{log}`` local log files, ``threads``
  the cores, ``resources.mem_mb``/``runtime`` memory and walltime;
- ``{params.x}`` and input functions are evaluated by Snakemake; a value that is a config
  value renders from that parameter, one that follows the wildcard renders from ``item``.

Snakemake's ``config`` keys become typed parameters (nested mappings flattened as
``key_sub``). What this subset cannot express (``run:``/``script:``/``wrapper:`` actions,
checkpoints, several wildcards in one rule, an aggregating rule scattered over the same
wildcard) is refused with the rule and what to change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epic_wfms.templates.errors import TemplateError
from epic_wfms.templates.importers import safe_name as _name
from epic_wfms.templates.targets.cwl import DEFAULT_IMAGE

_JINJA_OPEN = ("{{", "{%", "{#")
_MARK = "\x00ITEM\x00"
RESERVED = ("user", "campaign_name", "image")


def _literal(text: str) -> str:
    """Shell text as a Jinja2 literal (raw block where Jinja2 would read it as syntax)."""
    if any(mark in text for mark in _JINJA_OPEN):
        return "{% raw %}" + text + "{% endraw %}"
    return text


def _load(snakefile: Path, configfile: Path | None):
    """Snakemake's Workflow and DAG for the default target (all jobs, as if nothing exists)."""
    os.environ.setdefault("PANDA_BEHIND_REAL_LB", "1")  # panda-client's import-time DNS
    try:
        from snakemake.api import SnakemakeApi
        from snakemake.settings.enums import Quietness
        from snakemake.settings.types import (
            ConfigSettings,
            DAGSettings,
            OutputSettings,
            ResourceSettings,
            StorageSettings,
        )
    except ImportError as error:
        raise TemplateError("Snakemake is not installed", str(error),
                            "pip install 'epic-wfms[snakemake]'") from None
    from snakemake_interface_common.exceptions import WorkflowError

    created = not (snakefile.parent / ".snakemake").exists()
    chatter = logging.getLogger("snakemake.logging")  # "Building DAG of jobs..." on INFO
    level = chatter.level
    config = ConfigSettings(configfiles=[configfile.resolve()] if configfile else [])
    try:
        with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
            workflow_api = api.workflow(
                resource_settings=ResourceSettings(cores=256), config_settings=config,
                storage_settings=StorageSettings(), snakefile=snakefile,
                workdir=snakefile.parent)
            workflow_api.dag(DAGSettings(forceall=True))
            workflow = workflow_api._workflow
            chatter.setLevel(logging.WARNING)  # Snakemake set its level when it started
            workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True,
                                  nolock=True)
            workflow._build_dag()
            return workflow, workflow.dag
    except (WorkflowError, Exception) as error:  # Snakemake's own parse and DAG errors
        if isinstance(error, TemplateError):
            raise
        raise TemplateError(f"Snakemake cannot load {snakefile}", str(error).strip()[:800],
                            "fix the Snakefile until `snakemake -n` accepts it") from None
    finally:
        chatter.setLevel(level)
        if created:
            shutil.rmtree(snakefile.parent / ".snakemake", ignore_errors=True)


# ---------------------------------------------------------------- parameters


def _param_type(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"type": "boolean", "default": value}
    if isinstance(value, int):
        return {"type": "integer", "default": value}
    if isinstance(value, float):
        return {"type": "number", "default": value}
    if isinstance(value, str) or value is None:
        return {"type": "string", "default": value}
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) and
                                       not isinstance(v, bool) for v in value):
        items = ("integer" if all(isinstance(v, int) for v in value) else
                 "number" if all(isinstance(v, (int, float)) for v in value) else "string")
        return {"type": "list", "items": items,
                "default": value if items != "string" else [str(v) for v in value]}
    raise TemplateError(f"config key {where} holds a {type(value).__name__}",
                        "parameters are strings, numbers, booleans or lists of them",
                        "flatten that config entry")


def _config_parameters(config: dict[str, Any]) -> tuple[dict[str, dict], dict[str, str]]:
    """Typed parameters from Snakemake's config; also value -> parameter for unique values."""
    params: dict[str, dict] = {}

    def walk(prefix: list[str], value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk([*prefix, str(key)], sub)
            return
        where = "config[" + "][".join(repr(p) for p in prefix) + "]"
        name = _name("_".join(prefix), "parameter")
        if name in RESERVED:
            name = f"config_{name}"
        if name in params:
            raise TemplateError(f"config keys {where} and another both become parameter "
                                f"{name}", "nested keys are joined with _",
                                "rename one of the config keys")
        params[name] = {**_param_type(value, where), "help": f"Snakemake {where}"}

    for key, value in config.items():
        walk([str(key)], value)
    seen: dict[str, list[str]] = {}
    for name, spec in params.items():
        if spec["type"] in ("string", "integer", "number") and spec["default"] is not None:
            seen.setdefault(str(spec["default"]), []).append(name)
    return params, {value: names[0] for value, names in seen.items() if len(names) == 1}


# ---------------------------------------------------------------- per-instance values


@dataclass
class _Rule:
    """One rule's jobs, by wildcard value (a single job under the key None)."""

    name: str
    rule: Any
    jobs: dict[str | None, Any]
    wildcard: str | None = None
    step: dict[str, Any] = field(default_factory=dict)


class _Values:
    """Turns what differs between a rule's jobs into Jinja2 on ``item``."""

    def __init__(self, by_value: dict[str, str]) -> None:
        self.by_value = by_value  # config value -> parameter

    def scalar(self, value: str) -> str:
        name = self.by_value.get(value)
        return "{{ " + name + " }}" if name else _literal(value)

    def varying(self, rule: _Rule, values: dict[str | None, str], pattern: str | None = None,
                prefix: str = "") -> str:
        """Jinja2 for ``prefix + values[item]``: a constant, the wildcard's pattern, or a
        mapping of the wildcard's values (a config value as its parameter)."""
        distinct = set(values.values())
        if len(distinct) == 1:
            return _literal(prefix) + self.scalar(distinct.pop())
        if pattern is not None and rule.wildcard is not None:
            from snakemake.io import apply_wildcards

            try:
                if all(apply_wildcards(pattern, {rule.wildcard: w}) == v
                       for w, v in values.items()):
                    parts = apply_wildcards(pattern, {rule.wildcard: _MARK}).split(_MARK)
                    return _literal(prefix) + "{{ item }}".join(_literal(p) for p in parts)
            except Exception:  # a pattern Snakemake cannot apply: fall back to the values
                pass
        entries = ", ".join(f"{json.dumps(w)}: " + (self.by_value.get(v) or json.dumps(v))
                            for w, v in sorted(values.items()))
        return _literal(prefix) + "{{ {" + entries + "}[item] }}"


def _items(named: Any) -> list[tuple[str | None, list[str]]]:
    """A Snakemake Namedlist as (name, files) items in order."""
    return [(name, [str(v) for v in value] if isinstance(value, list) else [str(value)])
            for name, value in named._allitems()]


def _datatype(name: str | None, path: str, taken: set[str]) -> str:
    base = _name(name or (path.rsplit(".", 1)[-1] if "." in path else "out"), "datatype")
    datatype, k = base, 2
    while datatype in taken:
        datatype, k = f"{base}{k}", k + 1
    taken.add(datatype)
    return datatype


# ---------------------------------------------------------------- import


def import_snakefile(snakefile: Path, name: str | None = None,
                     configfile: Path | None = None) -> dict[str, Any]:
    """A Snakefile -> an epic-wfms template (mapping; dump it as YAML)."""
    snakefile = Path(snakefile).resolve()
    if not snakefile.is_file():
        raise TemplateError(f"Snakefile {snakefile} does not exist", "",
                            "give the path of the workflow's Snakefile")
    workflow, dag = _load(snakefile, configfile)
    template = _name(name or (snakefile.parent.name if snakefile.stem.lower() == "snakefile"
                              else snakefile.stem), "template")
    params, by_value = _config_parameters(dict(workflow.config))
    rules = _rules(workflow, dag)
    _wildcard_parameters(rules, params)
    values = _Values(by_value)
    producers = {str(f): (r, w) for r in rules.values() for w, job in r.jobs.items()
                 for f in job.output}
    outputs: dict[str, tuple[str, str]] = {}  # file -> (rule, datatype)
    for rule in rules.values():
        rule.step = _outputs(rule, values, outputs)
    digest = hashlib.sha256(snakefile.read_bytes()).hexdigest()
    for rule in rules.values():
        _inputs_and_command(rule, values, dag, producers, outputs, params,
                            f"snakemake:{snakefile.name}@sha256:{digest[:12]}")
    return {
        "template": template, "version": "1.0.0", "use_case": "analysis",
        "description": f"Imported from the Snakemake workflow {snakefile.name} (sha256 "
                       f"{digest[:12]}): one step per rule, scattered over its wildcard.",
        "parameters": {
            "user": {"type": "string", "required": True, "example": "jdoe",
                     "help": "Your PanDA/Rucio nickname (owner of the outputs)"},
            "campaign_name": {"type": "string", "default": template,
                              "help": "Campaign (names the datasets)"},
            "image": {"type": "string", "default": DEFAULT_IMAGE,
                      "help": "Container image of rules without a container: directive"},
            **params},
        "campaign": {"name": "{{ campaign_name }}", "activity": "analysis",
                     "user": "{{ user }}"},
        "steps": [rule.step for rule in rules.values()],
    }


def _rules(workflow: Any, dag: Any) -> dict[str, _Rule]:
    jobs_by_rule: dict[str, list] = {}
    for job in dag.jobs:
        jobs_by_rule.setdefault(job.rule.name, []).append(job)
    rules: dict[str, _Rule] = {}
    refused = []
    for rule in workflow.rules:  # Snakefile order
        jobs = jobs_by_rule.get(rule.name)
        if not jobs:
            continue  # not needed for the default target
        if not rule.output:
            if not rule.norun:
                refused.append(f"{rule.name} (no output: a step writes at least one file)")
            continue  # a target rule (`all`): the DAG already holds what it asks for
        if getattr(rule, "is_checkpoint", False):
            refused.append(f"{rule.name} (checkpoint: the DAG changes while it runs)")
            continue
        if not rule.is_shell:
            refused.append(f"{rule.name} (its action is not shell:)")
            continue
        wildcards = sorted({k for job in jobs for k in job.wildcards_dict})
        if len(wildcards) > 1:
            refused.append(f"{rule.name} (wildcards {', '.join(wildcards)}: one per rule)")
            continue
        wildcard = wildcards[0] if wildcards else None
        by_value = {(job.wildcards_dict[wildcard] if wildcard else None): job for job in jobs}
        rules[rule.name] = _Rule(_name(rule.name, "step"), rule, by_value, wildcard)
    if refused:
        raise TemplateError("rules outside the importable Snakemake subset: "
                            + "; ".join(refused),
                            "a step runs one shell command per job, scattered over at most "
                            "one wildcard, on a DAG known before it runs",
                            "write those rules with shell: (a script as `python "
                            "scripts/x.py {input} {output}`), or split the wildcards")
    if not rules:
        raise TemplateError("the Snakefile has no rule with a shell: action to import",
                            "each step of a template runs a command", "add shell: rules")
    return rules


def _wildcard_parameters(rules: dict[str, _Rule], params: dict[str, dict]) -> None:
    by_wildcard: dict[str, set[str]] = {}
    for rule in rules.values():
        if rule.wildcard:
            by_wildcard.setdefault(rule.wildcard, set()).update(rule.jobs)
    for wildcard, found in by_wildcard.items():
        name = _name(wildcard, "parameter")
        if name in params or name in RESERVED:
            name = f"{name}_values"
        odd = [r.name for r in rules.values()
               if r.wildcard == wildcard and set(r.jobs) != found]
        if odd:
            raise TemplateError(f"rules {', '.join(odd)} run for other {{{wildcard}}} values "
                                "than the rest", "a scattered step runs once per value of one "
                                "list", "give the wildcard one set of values")
        params[name] = {"type": "list", "default": sorted(found),
                        "help": f"Values of the Snakemake wildcard {{{wildcard}}} (one step "
                                "instance each)"}
        for rule in rules.values():
            if rule.wildcard == wildcard:
                rule.step["foreach"] = name


def _per_job(rule: _Rule, get) -> dict[str | None, Any]:
    return {w: get(job) for w, job in rule.jobs.items()}


def _outputs(rule: _Rule, values: _Values, outputs: dict[str, tuple[str, str]]
             ) -> dict[str, Any]:
    step: dict[str, Any] = {"name": rule.name, **rule.step,
                            "description": f"Snakemake rule {rule.rule.name}"}
    raw = [str(p) for _, files in _items(rule.rule.output) for p in files]
    per_job = _per_job(rule, lambda job: _items(job.output))
    first = next(iter(per_job.values()))
    taken: set[str] = set()
    entries, placeholders = [], {}
    for k, (item_name, files) in enumerate(first):
        names = []
        for j in range(len(files)):
            paths = {w: items[k][1][j] for w, items in per_job.items()}
            index = sum(len(f) for _, f in first[:k]) + j
            pattern = posixpath.basename(raw[index]) if index < len(raw) else None
            file = values.varying(rule, {w: posixpath.basename(p) for w, p in paths.items()},
                                  pattern)
            datatype = _datatype(item_name, files[j], taken)
            entries.append({"datatype": datatype, "file": file})
            for path in paths.values():
                outputs[path] = (rule.name, datatype)
            names.append(file)
        placeholders[(item_name, k)] = " ".join(names)
    if len({e["file"] for e in entries}) != len(entries):
        raise TemplateError(f"rule {rule.rule.name} writes two outputs of the same name",
                            "a job writes its outputs into one directory",
                            "give the outputs different file names")
    step["outputs"] = entries
    step["_outputs"] = placeholders
    return step


def _inputs_and_command(rule: _Rule, values: _Values, dag: Any,
                        producers: dict[str, tuple[_Rule, str | None]],
                        outputs: dict[str, tuple[str, str]], params: dict[str, dict],
                        source: str) -> None:
    step = rule.step
    per_job = _per_job(rule, lambda job: _items(job.input))
    first = next(iter(per_job.values()))
    raw_items = _items(rule.rule.input) if all(
        isinstance(v, str) for v in rule.rule.input) else None
    inputs, placeholders, streams = [], {}, 0
    for k, (item_name, files) in enumerate(first):
        made = [f in outputs for f in files]
        if any(made) and not all(made):
            raise TemplateError(f"rule {rule.rule.name}: input {item_name or k} mixes files "
                                "other rules write with the workflow's own files",
                                "an input reads one upstream step's output",
                                "split it into two named inputs")
        if all(made) and files:
            producer_names = {outputs[f] for items in per_job.values() for f in items[k][1]}
            if len(producer_names) != 1:
                raise TemplateError(f"rule {rule.rule.name}: input {item_name or k} reads "
                                    "outputs of several rules or kinds",
                                    "an input reads one upstream step's output of one kind",
                                    "give each upstream output its own named input")
            producer, datatype = producer_names.pop()
            _check_pairing(rule, k, per_job, producers)
            entry: dict[str, Any] = {"from": producer, "datatype": datatype}
            if streams:
                entry["role"] = "secondary"
            placeholder = "%IN" if not streams else f"%IN{streams + 1}"
            streams += 1
            inputs.append(entry)
            placeholders[(item_name, k)] = f"$(echo {placeholder} | tr , ' ')"
        else:
            paths = []
            for j in range(len(files)):
                got = {w: items[k][1][j] for w, items in per_job.items()}
                for path in got.values():
                    _check_own_file(rule, path)
                pattern = (raw_items[k][1][j] if raw_items and len(raw_items) == len(first)
                           and len(raw_items[k][1]) == len(files) else None)
                paths.append(values.varying(rule, got, pattern, prefix="payloads/"))
            placeholders[(item_name, k)] = " ".join(paths)
    if inputs:
        step["inputs"] = inputs
    else:
        step["jobs"] = 1
    job = next(iter(rule.jobs.values()))
    threads = max(1, min(256, int(job.threads or 1)))
    resources = {"cores": threads}
    mem_mb = job.resources.get("mem_mb")
    if isinstance(mem_mb, int) and mem_mb > 0:
        resources["memory_mb"] = max(100, mem_mb // threads)
    runtime = job.resources.get("runtime")
    if isinstance(runtime, int) and runtime > 0:
        resources["walltime_min"] = runtime
    step["resources"] = resources
    context = {"input": placeholders, "output": step.pop("_outputs"),
               "threads": str(threads)}
    step["payload"] = {"image": _image(rule), "origin": "user", "source": source,
                       "command": _command(rule, values, context)}


def _check_pairing(rule: _Rule, k: int, per_job: dict, producers: dict) -> None:
    """A rule scattered over {w} reading a rule scattered over {w} reads the same value's
    output: the template pairs instances by value, so anything else cannot be said."""
    for value, items in per_job.items():
        for path in items[k][1]:
            upstream, upstream_value = producers[path]
            if (rule.wildcard and upstream.wildcard == rule.wildcard
                    and upstream_value != value):
                raise TemplateError(
                    f"rule {rule.rule.name} ({{{rule.wildcard}}}={value}) reads {path} of "
                    f"{upstream.rule.name} ({{{rule.wildcard}}}={upstream_value})",
                    "scattered steps over the same list read their own value's output",
                    "aggregate in a rule without that wildcard (expand())")


def _check_own_file(rule: _Rule, path: str) -> None:
    normal = posixpath.normpath(path)
    if posixpath.isabs(normal) or normal.startswith(".."):
        raise TemplateError(f"rule {rule.rule.name} reads {path}, outside the workflow's "
                            "directory", "a job sees the workflow's files as payloads/",
                            "keep the workflow's input files under its directory")


def _image(rule: _Rule) -> str:
    image = getattr(rule.rule, "container_img", None)
    if isinstance(image, str) and image:
        return _literal(image.removeprefix("docker://"))
    return "{{ image }}"


def _command(rule: _Rule, values: _Values, context: dict[str, Any]) -> str:
    """The rule's shell command with Snakemake's placeholders in template terms."""
    out, text = [], ""  # literal text is escaped whole (Formatter splits it at {{ and }})
    for literal, field_name, _spec, _conversion in string.Formatter().parse(rule.rule.shellcmd):
        text += literal
        if field_name is None:
            continue
        out += [_literal(text), _field(rule, values, context, field_name)]
        text = ""
    return "".join([*out, _literal(text)]).strip()


_FIELD = re.compile(r"^(\w+)(?:\.(\w+)|\[(\d+)\]|\[['\"]?(\w+)['\"]?\])?$")


def _field(rule: _Rule, values: _Values, context: dict[str, Any], field_name: str) -> str:
    """One ``{...}`` of Snakemake's shell formatting (Python format fields)."""
    match = _FIELD.match(field_name)
    unsupported = TemplateError(
        f"rule {rule.rule.name}: {{{field_name}}} in its shell command",
        "the import knows input, output, log, params, wildcards, threads, resources, rule",
        "compute the value in params: and use {params.NAME}")
    if not match:
        raise unsupported
    head, attr, index, key = match.groups()
    attr = attr or key
    if head in ("input", "output"):
        items = context[head]
        if attr is None and index is None:
            return " ".join(v for v in items.values() if v)
        for (item_name, k), text in items.items():
            if (attr is not None and item_name == attr) or (index is not None
                                                            and k == int(index)):
                return text
        raise unsupported
    if head == "wildcards":
        if rule.wildcard is None or (attr or rule.wildcard) != rule.wildcard:
            raise unsupported
        return "{{ item }}"
    if head == "threads":
        return context["threads"]
    if head == "rule":
        return _literal(rule.rule.name)
    if head in ("log", "params", "resources"):
        def get(job, head=head):
            named = getattr(job, head)
            if attr is None and index is None:
                return " ".join(posixpath.basename(str(v)) if head == "log" else _text(v)
                                for v in named) if head != "resources" else None
            value = (getattr(named, attr, None) if attr is not None
                     else named[int(index)] if int(index) < len(named) else None)
            if value is None:
                return None
            return posixpath.basename(str(value)) if head == "log" else _text(value)

        got = _per_job(rule, get)
        if any(v is None for v in got.values()):
            raise unsupported
        pattern = None
        raw = getattr(rule.rule, head, None)
        if head == "params" and attr is not None and isinstance(getattr(raw, attr, None),
                                                                  str):
            pattern = getattr(raw, attr)
        elif head == "log" and raw is not None and attr is None and len(raw) == 1:
            pattern = posixpath.basename(str(raw[0]))
        return values.varying(rule, got, pattern)
    raise unsupported


def _text(value: Any) -> str:
    """How Snakemake's shell formatting writes a value: lists space-separated."""
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        return " ".join(str(v) for v in value)
    return str(value)
