"""PanDA/JEDI target: one task-parameter dictionary per step, in exactly the format
panda-client's ``prun`` submits (``Client.insertTaskParams``).

Each step maps to the ``prun`` command line a user would type (``prun_arguments``); the
dictionary is built from it the way prun builds it, without prun's per-call cost (proxy,
sandbox, argparse), so that a campaign of thousands of tasks renders in well under a
second. ``tests/test_templates_panda.py`` checks every step of every template against
``pandaclient.PrunScript.main(get_taskparams=True)`` itself. Campaign settings that prun
has no option for are added as the JEDI task parameters of the same name
(``PRUN_LACKS``): taskPriority, campaign, gshare, coreCount other than 1/8, job cloning.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import re
from typing import Any
from urllib.parse import quote

from epic_wfms.templates.errors import TargetError
from epic_wfms.templates.schema import RenderedWorkflow, Step

PANDA_CLIENT_VERSION = "2.2.0"  # the pinned panda-client whose format we produce
VO = "epic"
PRUN_LACKS = ("taskPriority", "campaign", "gshare", "coreCount", "useJobCloning",
              "nSitesPerJob")
_RNDM = re.compile(r"%RNDM[:=](\d+)")
_PLACEHOLDER = re.compile(r"%(?:RNDM|OUT|SKIPEVENTS|FIRSTEVENT|MAXEVENTS|DB)\b")
_CONTAINER_EXEC = ('echo "=== cat exec script ==="; cat __run_main_exec.sh; echo; '
                   'echo "=== exec script ==="; /bin/sh __run_main_exec.sh')


def image_url(image: str) -> str:
    """ePIC registry images are Docker Hub ``eicweb/...``; PanDA wants a scheme."""
    return image if "://" in image else f"docker://{image}"


def task_name(step: Step) -> str:
    """The task is named after its first output dataset without the file part."""
    first = step.outputs[0]
    return first.dataset.split(":", 1)[1].removesuffix(f"_{first.file}")


def panda_container(dataset: str, produced: dict[str, str]) -> str:
    """Our dataset name -> the name PanDA knows it by (output containers end with '/')."""
    return produced.get(dataset, dataset)


def _stream_name(index: int) -> str:
    return f"IN{index + 2}"


def prun_arguments(step: Step, workflow: RenderedWorkflow, produced: dict[str, str]
                   ) -> list[str]:
    """The prun command line equivalent to this step (recorded as the task's cliParams)."""
    campaign = workflow.campaign
    args = ["--exec", step.payload.command, "--outDS", task_name(step), "--vo", VO,
            "--containerImage", image_url(step.payload.image),
            "--outputs", ",".join(o.file for o in step.outputs)]
    primary = [i for i in step.inputs if i.role == "primary"]
    secondary = [i for i in step.inputs if i.role == "secondary"]
    if len(primary) > 1:
        raise TargetError(f"step {step.name} has {len(primary)} primary inputs",
                          "a PanDA task reads one primary input (more as secondary)",
                          "mark the others role: secondary")
    if primary:
        names = [panda_container(d, produced) for d in primary[0].datasets]
        args += ["--inDS", ",".join(names)]
        if primary[0].files_per_job:
            args += ["--nFilesPerJob", str(primary[0].files_per_job)]
    else:
        args += ["--nJobs", str(step.jobs)]
        if step.events_per_job:
            args += ["--nEventsPerJob", str(step.events_per_job)]
    if secondary:
        streams = []
        for index, item in enumerate(secondary):
            for name in item.datasets:
                bare = panda_container(name, produced)
                if ":" in bare:
                    scope, bare = bare.split(":", 1)
                    if bare.split(".")[0] != scope:
                        raise TargetError(
                            f"step {step.name}: secondary dataset {name}",
                            "prun's --secondaryDSs cannot carry a scope, so the name must "
                            "start with its scope", f"name it {scope}:{scope}.{bare}")
                streams.append(f"{_stream_name(index)}:{item.files_per_job or 1}:{bare}")
        args += ["--secondaryDSs", ",".join(streams)]
    resources = step.resources
    if resources.cores == 8:
        args += ["--nCore", "8"]
    args += ["--memory", str(resources.memory_mb)]
    args += ["--maxWalltime", str(math.ceil(resources.walltime_min / 60))]
    arch = _architecture(step)
    if arch:
        args += ["--architecture", arch]
    if campaign.prod_source_label != "user":
        args += ["--prodSourceLabel", campaign.prod_source_label]
    if campaign.working_group:
        args += ["--workingGroup", campaign.working_group]
    sites = step.sites or campaign.expedite.preferred_sites or campaign.sites
    if sites:
        args += ["--site", ",".join(sites)]
    excluded = step.excluded_sites or campaign.excluded_sites
    if excluded:
        args += ["--excludedSite", ",".join(excluded)]
    args += ["--priority", str(campaign.priority)]
    if campaign.retry.mode == "failed_parts":
        args += ["--maxAttempt", str(campaign.retry.max_attempts)]
    else:
        args += ["--disableAutoRetry"]
    return args


def _architecture(step: Step) -> str:
    """prun's '@base#CPU&GPU' syntax; empty for the default x86_64 CPU."""
    res = step.resources
    cpu = "" if res.arch == "x86_64" else f"#{res.arch}"
    gpu = "&nvidia" if res.gpus else ""
    if gpu and not cpu:
        cpu = f"#{res.arch}"
    return cpu + gpu


def _cli_string(argv: list[str]) -> str:
    """The command line as prun records it in cliParams."""
    parts = ["prun"]
    for item in argv:
        parts.append(f'"{item}"' if re.search(r"(\*| |')", item) else item)
    return " ".join(parts)


def _exec_parameters(command: str) -> list[dict[str, Any]]:
    """The -p "<exec>" block: URL-quoted constants, %RNDM:N as a seq_number pseudo input."""
    unsupported = _PLACEHOLDER.findall(_RNDM.sub("", command))
    if unsupported:
        raise TargetError(f"payload command uses {unsupported[0]}",
                          "the PanDA target supports %IN, %INn and %RNDM:N placeholders",
                          "write the command with those placeholders only")
    params: list[dict[str, Any]] = [{"type": "constant", "value": '-p "', "padding": False}]
    position = 0
    for match in _RNDM.finditer(command):
        if match.start() and command[match.start() - 1] not in " =":
            raise TargetError(f"payload command {command!r}",
                              "%RNDM:N must follow a space or '='", "write ' --seed %RNDM:N'")
        params.append({"type": "constant", "value": quote(command[position:match.start()]),
                       "padding": False})
        params.append({"type": "template", "value": "${SEQNUMBER}",
                       "param_type": "pseudo_input", "dataset": "seq_number",
                       "offset": int(match.group(1)), "padding": False})
        position = match.end()
    if position < len(command):
        params.append({"type": "constant", "value": quote(command[position:]),
                       "padding": False})
    params.append({"type": "constant", "value": '"'})
    return params


@functools.cache
def _os_info() -> str:
    """The submitting host's OS, as prun records it (platform.platform is slow)."""
    return platform.platform()


def _source_url() -> str:
    base = os.environ.get("PANDA_URL_SSL", "https://pandaserver.cern.ch/server/panda")
    match = re.search("(http.*://[^/]+)/", base)
    return match.group(1) if match else base


def task_params(step: Step, workflow: RenderedWorkflow, produced: dict[str, str]
                ) -> dict[str, Any]:
    """One JEDI task-parameter dictionary, as prun builds it for ``prun_arguments``."""
    argv = prun_arguments(step, workflow, produced)
    options = _options(argv)
    campaign = workflow.campaign
    name = task_name(step) + "/"
    lfn_prefix = ".".join(name.split(".")[:2])
    image = image_url(step.payload.image)
    params: dict[str, Any] = {
        "taskName": name, "uniqueTaskName": True, "vo": VO,
        "architecture": options.get("--architecture", ""),
        "transUses": "", "transHome": None,
        "processingType": f"panda-client-{PANDA_CLIENT_VERSION}-jedi-run",
        "prodSourceLabel": campaign.prod_source_label,
    }
    sites = options.get("--site", "").split(",") if "--site" in options else []
    params["site"] = sites[0] if len(sites) == 1 else None
    params["excludedSite"] = [s for s in options.get("--excludedSite", "").split(",") if s]
    params["includedSite"] = sites if len(sites) > 1 else None
    params["currentPriority"] = campaign.priority
    if "--inDS" not in options:
        per_job = step.events_per_job or 1
        params["nEvents"] = per_job * step.jobs if step.events_per_job else step.jobs
        params["nEventsPerJob"] = per_job
        params["noInput"] = True
    elif "--nFilesPerJob" in options:
        params["nFilesPerJob"] = int(options["--nFilesPerJob"])
    params["cliParams"] = _cli_string(argv)
    params["osInfo"] = _os_info()
    if "--disableAutoRetry" in options:
        params["disableAutoRetry"] = 1
    if campaign.working_group:
        params["workingGroup"] = campaign.working_group
    params["nMaxFilesPerJob"] = 200
    params["maxWalltime"] = int(options["--maxWalltime"])
    params["ramCount"] = step.resources.memory_mb
    params["ramCountUnit"] = "MBPerCore"
    if step.resources.cores == 8:
        params["coreCount"] = 8
    params["respectSplitRule"] = True
    if "--maxAttempt" in options:
        params["maxAttempt"] = campaign.retry.max_attempts
    params["sourceURL"] = _source_url()
    params["container_name"] = image
    params["multiStepExec"] = {
        "preprocess": {"command": "${TRF}", "args": "--preprocess ${TRF_ARGS}"},
        "postprocess": {"command": "${TRF}", "args": "--postprocess ${TRF_ARGS}"},
        "containerOptions": {"containerExec": _CONTAINER_EXEC, "containerImage": image},
    }
    log = name.removesuffix("/") + ".log/"
    params["log"] = {"dataset": log, "container": log, "type": "template", "param_type": "log",
                     "value": f"{log[:-1]}.$JEDITASKID.${{SN}}.log.tgz"}
    params["jobParameters"] = _job_parameters(step, name, lfn_prefix, options)
    if "--inDS" in options:
        params["dsForIN"] = options["--inDS"]
    if "--secondaryDSs" in options:
        params["reuseSecOnDemand"] = True
    params.update(_campaign_extras(step, workflow))
    return params


def _options(argv: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    index = 0
    while index < len(argv):
        key = argv[index]
        if index + 1 < len(argv) and not argv[index + 1].startswith("--"):
            options[key] = argv[index + 1]
            index += 2
        else:
            options[key] = ""
            index += 1
    return options


def _job_parameters(step: Step, name: str, lfn_prefix: str, options: dict[str, str]
                    ) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"type": "constant", "value": '-j "" --sourceURL ${SURL}'},
        {"type": "constant", "value": "-r ."},
        {"type": "constant", "value": "__delimiter__", "hidden": True},
        {"type": "constant", "value": "-a None"},
    ]
    out_map = {}
    for output in step.outputs:
        container = f"{name[:-1]}_{output.file}/"
        lfn = f"{lfn_prefix}.$JEDITASKID._${{SN/P}}.{output.file}"
        params.append({"type": "template", "param_type": "output", "value": lfn,
                       "dataset": container, "container": container, "hidden": True})
        out_map[output.file] = lfn
    params.append({"type": "constant", "value": f'-o "{out_map}"'})
    if "--inDS" in options:
        params.append({"type": "template", "param_type": "input", "value": '-i "${IN/T}"',
                       "dataset": options["--inDS"], "exclude": "\\.log\\.tgz(\\.\\d+)*$",
                       "expand": True})
    params += _exec_parameters(step.payload.command)
    if "--secondaryDSs" in options:
        in_map = {"IN": "${IN/T}"}
        for stream in options["--secondaryDSs"].split(","):
            label, n_files, dataset = stream.split(":", 2)
            params.append({"type": "template", "param_type": "input", "value": f"${{{label}}}",
                           "dataset": dataset, "hidden": True, "expand": True,
                           "nFilesPerJob": int(n_files)})
            in_map[label] = f"${{{label}/T}}"
        text = "{" + ", ".join(f"'{k}': {v}" for k, v in in_map.items()) + "}"
        params.append({"type": "constant", "value": f'--inMap "{text}"'})
    return params


def _campaign_extras(step: Step, workflow: RenderedWorkflow) -> dict[str, Any]:
    """JEDI task parameters prun has no option for (names as JEDI's TaskRefiner reads)."""
    campaign = workflow.campaign
    extras: dict[str, Any] = {"taskPriority": campaign.priority, "campaign": campaign.name}
    if campaign.share:  # the global share; PanDA keeps it when valid, else assigns one
        extras["gshare"] = campaign.share
    if step.resources.cores not in (1, 8):
        extras["coreCount"] = step.resources.cores
    if campaign.expedite.job_cloning:
        extras["useJobCloning"] = campaign.expedite.job_cloning
        extras["nSitesPerJob"] = campaign.expedite.clones
    return extras


def produced_containers(workflow: RenderedWorkflow) -> dict[str, str]:
    """Each produced dataset -> the output container prun names it (``<task>_<file>/``)."""
    return {o.dataset: f"{task_name(s)}_{o.file}/" for s in workflow.steps for o in s.outputs}


def render_panda(workflow: RenderedWorkflow) -> dict[str, Any]:
    """Task parameters for every step, plus what PanDA alone cannot express."""
    produced = produced_containers(workflow)
    tasks, notes = [], []
    parents: dict[str, list[str]] = {}
    names = {s.name: task_name(s) + "/" for s in workflow.steps}
    for step in workflow.steps:
        tasks.append(task_params(step, workflow, produced))
        parents[names[step.name]] = [names[d] for d in step.depends_on]
        if step.loop:
            notes.append(f"{step.name}: loop until '{step.loop.check}' succeeds (at most "
                         f"{step.loop.max_iterations} iterations) is driven by iDDS or the "
                         "local runner; PanDA runs one task per iteration")
        for cond in step.when:
            notes.append(f"{step.name}: condition {cond.kind} {cond.subject} is checked "
                         "before submission (iDDS condition)")
    return {"tasks": tasks, "parents": parents, "notes": notes}
