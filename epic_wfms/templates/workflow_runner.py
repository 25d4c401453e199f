"""The embedded backend's target: run a rendered workflow's steps as local processes.

Steps run in dependency order; conditions (input ready, upstream validated, calibration
ready) are checked before a step starts; loops repeat a step until its check command exits
0; the campaign's retry policy re-runs failed jobs (failed_parts) or the whole step
(whole_task). Payloads run in their container image with apptainer/singularity or docker
when one is installed, else directly on the host, and every job record says which.
Placeholders follow prun: %IN (primary input files), %IN2.. (secondary streams in order),
%RNDM:N (N + job number), and %OUT (the step's output files, for ``validate``), each
shell-quoted for its place in the command (``commands.py``). Dataset directories stay inside
the run's work directory.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epic_wfms.lifecycle.template import StepOutcome, StepRunStatus, SubmissionStatus
from epic_wfms.security.paths import OutsideAreaError, confine
from epic_wfms.store.database import Database
from epic_wfms.templates import records
from epic_wfms.templates.commands import substitute
from epic_wfms.templates.errors import TemplateError
from epic_wfms.templates.loader import default_template_dir
from epic_wfms.templates.schema import RenderedWorkflow, Step
from epic_wfms.templates.targets.panda import image_url

_RNDM = re.compile(r"%RNDM[:=](\d+)")
_OUTPUT_LOG_CHARS = 2000


@functools.cache
def container_runtime() -> tuple[str, str]:
    """(runtime, note): a working container engine on this host, or 'host' and why.

    ``EPIC_CONTAINER_RUNTIME=host`` forces running on the host."""
    forced = os.environ.get("EPIC_CONTAINER_RUNTIME", "")
    for name in ("apptainer", "singularity", "docker"):
        if forced in ("", name) and shutil.which(name) and _works(name):
            return name, f"payloads ran in their images with {name}"
    return "host", ("no working container runtime (apptainer, singularity, docker) on this "
                    "host: payload commands ran directly on the host, not in their images")


def _works(name: str) -> bool:
    """docker needs its daemon; apptainer/singularity only the binary."""
    probe = [name, "info"] if name == "docker" else [name, "--version"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass
class LocalRunOptions:
    workdir: Path
    inputs: dict[str, Path] = field(default_factory=dict)  # external dataset -> directory
    toy_inputs: bool = False  # write small toy files for unbound external datasets
    toy_files: int = 3
    payload_dir: Path = field(default_factory=lambda: default_template_dir() / "payloads")


class StepFailed(Exception):
    """A step could not finish; the message says why."""


class WorkflowRunner:
    """Runs one rendered workflow locally and records it in the store."""

    def __init__(self, db: Database, workflow: RenderedWorkflow, options: LocalRunOptions
                 ) -> None:
        self.db, self.workflow, self.options = db, workflow, options
        # jobs run in their own directories: every path they are given is absolute
        options.workdir = Path(options.workdir).resolve()
        options.inputs = {k: Path(v).resolve() for k, v in options.inputs.items()}
        self.runtime, self.runtime_note = container_runtime()
        self.status: dict[str, StepOutcome] = {}
        self.validated: set[str] = set()
        self.converged: dict[str, int] = {}
        self.messages: dict[str, str] = {}
        self.submission_id = 0
        self.last_error = ""
        self.produced = {o.dataset for s in workflow.steps for o in s.outputs}

    # ------------------------------------------------------------------ datasets
    def dataset_dir(self, dataset: str) -> Path:
        if dataset in self.options.inputs:
            return Path(self.options.inputs[dataset])
        scope, _, name = dataset.partition(":")
        area = self.options.workdir / "datasets"
        try:
            return confine(area / scope / name, area, f"dataset {dataset}")
        except OutsideAreaError as error:
            raise TemplateError(error.what, "dataset names never lead out of the work "
                                "directory", "name datasets scope:name (docs/templates.md)"
                                ) from None

    def dataset_files(self, dataset: str) -> list[Path]:
        directory = self.dataset_dir(dataset)
        return sorted(p for p in directory.iterdir() if p.is_file()) if directory.is_dir() else []

    def _prepare_external_inputs(self) -> None:
        for step in self.workflow.steps:
            for item in step.inputs:
                for dataset in item.datasets:
                    if dataset in self.produced or self.dataset_files(dataset):
                        continue
                    if self.options.toy_inputs:
                        self._write_toy_dataset(dataset)

    def _write_toy_dataset(self, dataset: str) -> None:
        directory = self.dataset_dir(dataset)
        directory.mkdir(parents=True, exist_ok=True)
        name = dataset.partition(":")[2]
        for index in range(self.options.toy_files):
            path = directory / f"{name}.toy_{index:03d}.json"
            path.write_text(json.dumps({"events": 10, "toy": True, "dataset": dataset}))

    # ------------------------------------------------------------------ run
    def run(self) -> dict[str, Any]:
        self.options.workdir.mkdir(parents=True, exist_ok=True)
        self.submission_id = records.record_submission(
            self.db, self.workflow, "local", dry_run=False, status=SubmissionStatus.RUNNING,
            runtime=self.runtime_note)
        self._prepare_external_inputs()
        for step in self.workflow.steps:
            self.status[step.name] = self._run_step(step)
        failed = [n for n, s in self.status.items() if s != StepOutcome.FINISHED]
        status = SubmissionStatus.FAILED if failed else SubmissionStatus.FINISHED
        if records.submission_status(self.db, self.submission_id) == SubmissionStatus.CANCELLED:
            status = SubmissionStatus.CANCELLED  # an operator killed it: the record says so
        error = "; ".join(f"{n}: {self.messages.get(n, self.status[n])}" for n in failed)
        records.finish_submission(self.db, self.submission_id, status, error or None)
        return self.report(status, error)

    def report(self, status: str, error: str) -> dict[str, Any]:
        outputs = {o.dataset: [p.name for p in self.dataset_files(o.dataset)]
                   for s in self.workflow.steps for o in s.outputs}
        return {"submission_id": self.submission_id, "template": self.workflow.template,
                "status": status, "error": error or None, "steps": dict(self.status),
                "iterations": dict(self.converged), "validated": sorted(self.validated),
                "outputs": outputs, "runtime": self.runtime, "runtime_note": self.runtime_note,
                "rendered_hash": self.workflow.rendered_hash, "workdir": str(self.options.workdir)}

    def _run_step(self, step: Step) -> StepOutcome:
        blocked = [d for d in step.depends_on if self.status.get(d) != StepOutcome.FINISHED]
        if blocked:
            self.messages[step.name] = f"not run: upstream {', '.join(blocked)} did not finish"
            return StepOutcome.SKIPPED
        try:
            self._check_conditions(step)
            self._execute(step)
            if step.validate_cmd:
                self._validate(step)
        except StepFailed as error:
            self.messages[step.name] = str(error)
            return StepOutcome.FAILED
        return StepOutcome.FINISHED

    def _check_conditions(self, step: Step) -> None:
        for cond in step.when:
            subject = cond.subject
            if cond.kind == "input_ready":
                datasets = ([subject] if ":" in subject else
                            [o.dataset for o in self.workflow.step(subject).outputs])
                count = sum(len(self.dataset_files(d)) for d in datasets)
                if count < cond.min_files:
                    raise StepFailed(
                        f"condition input_ready {subject}: {count} file(s), need "
                        f"{cond.min_files}; bind the dataset with --input {subject}=DIR "
                        "or use --toy-inputs for a dress rehearsal")
            elif cond.kind == "upstream_validated":
                if not _all_in(_matching(step, subject), self.validated):
                    raise StepFailed(f"condition upstream_validated {subject}: not validated")
            elif not _all_in(_matching(step, subject), self.converged):
                raise StepFailed(f"condition calibration_ready {subject}: the loop did "
                                 "not converge")

    def _job_inputs(self, step: Step) -> tuple[list[list[Path]], list[list[Path]]]:
        primary = [i for i in step.inputs if i.role == "primary"]
        secondary = [i for i in step.inputs if i.role == "secondary"]
        streams = [[f for d in i.datasets for f in self.dataset_files(d)] for i in secondary]
        if not primary:
            return [[] for _ in range(step.jobs)], streams
        files = [f for i in primary for d in i.datasets for f in self.dataset_files(d)]
        if not files:
            raise StepFailed("no input files in " + ", ".join(primary[0].datasets))
        per_job = primary[0].files_per_job or len(files)
        return [files[k:k + per_job] for k in range(0, len(files), per_job)], streams

    def _execute(self, step: Step) -> None:
        chunks, streams = self._job_inputs(step)
        iterations = step.loop.max_iterations if step.loop else 1
        for iteration in range(1, iterations + 1):
            self._run_jobs(step, chunks, streams, iteration)
            if not step.loop:
                return
            if self._command(step, step.loop.check, 0, iteration, [], streams, "check") == 0:
                self.converged[step.name] = iteration
                return
        if step.loop.on_exhausted == "accept":
            self.converged[step.name] = iterations
            return
        raise StepFailed(f"loop did not converge in {iterations} iterations "
                         f"(check: {step.loop.check})")

    def _run_jobs(self, step: Step, chunks: list[list[Path]], streams: list[list[Path]],
                  iteration: int) -> None:
        retry = self.workflow.campaign.retry
        pending = list(range(len(chunks)))
        for attempt in range(1, retry.max_attempts + 1):
            failed = [j for j in pending
                      if not self._run_job(step, j, chunks[j], streams, iteration, attempt)]
            if not failed:
                return
            pending = failed if retry.mode == "failed_parts" else list(range(len(chunks)))
        raise StepFailed(f"job(s) {', '.join(map(str, failed))} failed after "
                         f"{retry.max_attempts} attempt(s) ({retry.mode}): {self.last_error}")

    def _job_dir(self, step: Step, job: int) -> Path:
        directory = self.options.workdir / "steps" / step.name / f"job_{job:04d}"
        directory.mkdir(parents=True, exist_ok=True)
        link = directory / "payloads"
        if not link.exists():
            link.symlink_to(self.options.payload_dir.resolve(), target_is_directory=True)
        return directory

    @staticmethod
    def _resources(step: Step) -> tuple[int, int]:
        return step.resources.cores, step.resources.gpus

    def _run_job(self, step: Step, job: int, files: list[Path], streams: list[list[Path]],
                 iteration: int, attempt: int) -> bool:
        if records.submission_status(self.db, self.submission_id) == SubmissionStatus.CANCELLED:
            raise StepFailed("the submission was killed by an operator (see the monitor)")
        directory = self._job_dir(step, job)
        command = self._substitute(step.payload.command, job, files, streams)
        run_id = records.start_step_run(self.db, self.submission_id, step.name, iteration, job,
                                        attempt, command, self.runtime)
        for output in step.outputs:
            (directory / output.file).unlink(missing_ok=True)
        code, log = self._spawn(step, command, directory, job, iteration)
        missing = [o.file for o in step.outputs if not (directory / o.file).exists()]
        if code != 0 or missing:
            why = (f"exit code {code}" if code != 0 else
                   f"payload did not write {', '.join(missing)}")
            records.end_step_run(self.db, run_id, StepRunStatus.FAILED, code, [],
                                 f"{why}\n{log}", *self._resources(step))
            self.last_error = f"{why}: {log[-300:]}"
            return False
        written = []
        for output in step.outputs:
            target_dir = self.dataset_dir(output.dataset)
            target_dir.mkdir(parents=True, exist_ok=True)
            task = output.dataset.partition(":")[2].removesuffix(f"_{output.file}")
            suffix = f".i{iteration}" if step.loop else ""
            name = f"{task}.{job:06d}{suffix}.{output.file}"
            shutil.copyfile(directory / output.file, target_dir / name)
            written.append(f"{output.dataset}/{name}")
        records.end_step_run(self.db, run_id, StepRunStatus.FINISHED, code, written,
                             log or None, *self._resources(step))
        return True

    def _command(self, step: Step, template: str, job: int, iteration: int,
                 files: list[Path], streams: list[list[Path]], label: str) -> int:
        directory = self._job_dir(step, job)
        command = self._substitute(template, job, files, streams)
        run_id = records.start_step_run(self.db, self.submission_id, f"{step.name}:{label}",
                                        iteration, job, 1, command, self.runtime)
        code, log = self._spawn(step, command, directory, job, iteration)
        records.end_step_run(
            self.db, run_id, StepRunStatus.FINISHED if code == 0 else StepRunStatus.FAILED,
            code, [], log or None, *self._resources(step))
        return code

    def _validate(self, step: Step) -> None:
        files = [f for o in step.outputs for f in self.dataset_files(o.dataset)]
        command = substitute(step.validate_cmd, {"%OUT": ",".join(str(f) for f in files)})
        if self._command(step, command, 0, 1, [], [], "validate") != 0:
            raise StepFailed(f"validation failed: {step.validate_cmd}")
        self.validated.add(step.name)

    @staticmethod
    def _substitute(command: str, job: int, files: list[Path], streams: list[list[Path]]
                    ) -> str:
        """File lists in place of %IN, %IN2, ... (shell-quoted), seeds in place of %RNDM:N."""
        lists = {f"%IN{index + 2}": ",".join(map(str, stream))
                 for index, stream in enumerate(streams)}
        lists["%IN"] = ",".join(map(str, files))
        return _RNDM.sub(lambda m: str(int(m.group(1)) + job), substitute(command, lists))

    def _spawn(self, step: Step, command: str, directory: Path, job: int, iteration: int
               ) -> tuple[int, str]:
        env = {**os.environ, "EPIC_WFMS_STEP": step.name, "EPIC_WFMS_JOB_INDEX": str(job),
               "EPIC_WFMS_ITERATION": str(iteration)}
        argv = self._argv(step, command, directory)
        try:
            done = subprocess.run(argv, cwd=directory, env=env, capture_output=True, text=True,
                                  timeout=step.resources.walltime_min * 60, check=False)
        except subprocess.TimeoutExpired:
            return -1, f"killed after the walltime of {step.resources.walltime_min} min"
        except OSError as error:  # the container runtime vanished
            return 127, f"cannot run {argv[0]!r}: {error.strerror or error}"
        log = (done.stdout + done.stderr)[-_OUTPUT_LOG_CHARS:]
        return done.returncode, log.strip()

    def _argv(self, step: Step, command: str, directory: Path) -> list[str]:
        if self.runtime in ("apptainer", "singularity"):
            return [self.runtime, "exec", "--bind", str(directory), "--bind",
                    str(self.options.payload_dir.resolve()),
                    image_url(step.payload.image), "sh", "-c", command]
        if self.runtime == "docker":
            return ["docker", "run", "--rm", "-v", f"{directory}:{directory}", "-w",
                    str(directory), step.payload.image, "sh", "-c", command]
        return ["sh", "-c", command]


def _matching(step: Step, subject: str) -> list[str]:
    """The upstream steps a condition names (a scattered step's instances included)."""
    return [d for d in step.depends_on if d == subject or d.startswith(f"{subject}_")]


def _all_in(names: list[str], done: set[str] | dict[str, int]) -> bool:
    return bool(names) and all(n in done for n in names)


def run_local(db: Database, workflow: RenderedWorkflow, options: LocalRunOptions
              ) -> dict[str, Any]:
    """Run ``workflow`` on this host; the report says what ran, where and how it ended."""
    return WorkflowRunner(db, workflow, options).run()
