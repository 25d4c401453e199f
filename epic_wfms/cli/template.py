"""``epic-wfms template``: list, show, validate, render and submit ePIC workflow templates.

``render NAME`` and ``submit NAME`` are built per template from its parameter schema, so
``epic-wfms template submit simulation_campaign --help`` lists that template's parameters
(type, allowed values or range, unit, default, help). Parameters are given as options
(``--events 1000``) or as ``-p events=1000``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click
import yaml
from rich.console import Console
from rich.table import Table

from epic_wfms.config import load_config
from epic_wfms.errors import EpicWfmsError
from epic_wfms.installation import open_database, template_submitters
from epic_wfms.lifecycle.template import SubmissionStatus
from epic_wfms.templates.errors import TemplateError
from epic_wfms.templates.loader import TemplateLibrary, default_template_dir, load_template_file
from epic_wfms.templates.params import describe_expected, parse_assignments
from epic_wfms.templates.render import CompiledTemplate, example_values, render_template
from epic_wfms.templates.schema import ParameterSpec, TemplateSpec
from epic_wfms.templates.tags import TagCatalogue, default_tag_dir
from epic_wfms.templates.targets import TARGETS, render_target


def _library() -> TemplateLibrary:
    directory = os.environ.get("EPIC_TEMPLATE_DIR")
    return TemplateLibrary(Path(directory) if directory else None)


def _fail(error: EpicWfmsError) -> click.ClickException:
    return click.ClickException(str(error))


def _param_help(spec: ParameterSpec) -> str:
    text = spec.help or ""
    detail = describe_expected(spec)
    if spec.required:
        detail += "; required"
    elif spec.default not in (None, []):
        detail += f"; default {spec.default}"
    return f"{text} [{detail}]" if text else f"[{detail}]"


def _option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=1, sort_keys=True, default=str))


class _PerTemplate(click.Group):
    """A group whose sub-commands are the templates, each with options from its schema."""

    def __init__(self, *args: Any, action: Any = None, extra: list | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.action, self.extra = action, extra or []

    def list_commands(self, ctx: click.Context) -> list[str]:
        return _library().names()

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        library = _library()
        try:
            spec, _ = library.load(name)
        except TemplateError as error:
            if name in ("--help", "-h"):
                return None
            raise _fail(error) from None
        params: list[click.Parameter] = [
            click.Option(["-p", "--param", "assignments"], multiple=True, metavar="NAME=VALUE",
                         help="A parameter as NAME=VALUE (repeatable)."),
            *[click.Option([_option_name(p), p], default=None, metavar=s.type.upper(),
                           help=_param_help(s)) for p, s in spec.parameters.items()],
            *[option() for option in self.extra],
        ]

        def callback(assignments: tuple[str, ...], **options: Any) -> None:
            chosen = {p: options.pop(p, None) for p in list(spec.parameters)}
            given = {p: v for p, v in chosen.items() if v is not None}
            try:
                given.update(parse_assignments(list(assignments)))
                self.action(library, name, given, **options)
            except EpicWfmsError as error:
                raise _fail(error) from None

        return click.Command(name, params=params, callback=callback,
                             help=f"{spec.description.strip()} (template {spec.version})",
                             short_help=spec.use_case)


def _target_option(default: str, choices: tuple[str, ...]):
    def make() -> click.Option:
        return click.Option(["--target"], type=click.Choice(choices), default=default,
                            show_default=True, help="What to produce.")
    return make


def _flag(name: str, dest: str, help_text: str):
    def make() -> click.Option:
        return click.Option([name, dest], is_flag=True, help=help_text)
    return make


@click.group("template")
def template_cli() -> None:
    """Parameterized ePIC workflow templates: list, show, validate, render, submit."""


@template_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_templates(as_json: bool) -> None:
    """The shipped templates, one per ePIC use case."""
    library = _library()
    rows = []
    for name in library.names():
        try:
            spec, _ = library.load(name)
            rows.append({"name": name, "version": spec.version, "use_case": spec.use_case,
                         "description": " ".join(spec.description.split())})
        except TemplateError as error:
            rows.append({"name": name, "error": str(error)})
    if as_json:
        _echo_json(rows)
        return
    table = Table("template", "version", "use case", "description")
    for row in rows:
        table.add_row(row["name"], row.get("version", "-"), row.get("use_case", "-"),
                      row.get("description", row.get("error", "")))
    Console(width=160).print(table)


@template_cli.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(name: str, as_json: bool) -> None:
    """A template's parameters (type, limits, unit, default, help) and steps."""
    try:
        spec, digest = _library().load(name)
    except EpicWfmsError as error:
        raise _fail(error) from None
    if as_json:
        _echo_json({**spec.model_dump(mode="json"), "template_hash": digest})
        return
    console = Console(width=160)
    console.print(f"[bold]{spec.template}[/bold] {spec.version} ({spec.use_case}): "
                  f"{' '.join(spec.description.split())}")
    table = Table("parameter", "accepts", "default", "help")
    for pname, pspec in spec.parameters.items():
        default = "required" if pspec.required else str(pspec.default)
        table.add_row(pname, describe_expected(pspec), default, pspec.help)
    console.print(table)
    console.print("steps: " + ", ".join(str(s.get("name")) for s in spec.steps))


@template_cli.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def validate(files: tuple[Path, ...], as_json: bool) -> None:
    """Check template files: format, parameters, rendering and every target."""
    results = [_validate_file(path) for path in files]
    if as_json:
        _echo_json(results)
    else:
        for result in results:
            mark = "ok" if result["ok"] else "INVALID"
            click.echo(f"{result['file']}: {mark}" + (
                f": {result['error']}" if not result["ok"] else
                f" ({result['steps']} steps, "
                f"{_describe_targets(result['targets'], result['refused'])})"))
    if not all(r["ok"] for r in results):
        raise SystemExit(1)


def check_template(spec: TemplateSpec, digest: str,
                   tags: TagCatalogue) -> tuple[int, list[str], dict[str, str]]:
    """Render with the examples and build every target: the number of steps, the targets
    that take the workflow, and why the others refuse it (iDDS cannot run every workflow;
    ``template submit`` refuses it there with the same reason)."""
    workflow = CompiledTemplate(spec, digest, tags).render(example_values(spec))
    refused: dict[str, str] = {}
    for target in TARGETS:
        rendered = render_target(workflow, target)
        if isinstance(rendered, dict) and rendered.get("unsupported"):
            refused[target] = str(rendered["unsupported"])
    return len(workflow.steps), [t for t in TARGETS if t not in refused], refused


def _describe_targets(targets: list[str], refused: dict[str, str]) -> str:
    return "targets " + ", ".join(targets) + "".join(
        f"; not {target}: {why}" for target, why in refused.items())


def _validate_file(path: Path) -> dict[str, Any]:
    try:
        spec, digest = load_template_file(path)
        tags = TagCatalogue(default_tag_dir(path.resolve().parent))
        steps, targets, refused = check_template(spec, digest, tags)
    except EpicWfmsError as error:
        return {"file": str(path), "ok": False, "error": str(error)}
    return {"file": str(path), "ok": True, "steps": steps, "targets": targets,
            "refused": refused}


def _render_action(library: TemplateLibrary, name: str, given: dict[str, Any], target: str,
                   as_json: bool) -> None:
    workflow = render_template(name, given, library)
    if target == "workflow":
        result: Any = workflow.model_dump(mode="json", by_alias=True)
    else:
        result = render_target(workflow, target)
    if target == "cwl" and not as_json:
        click.echo(result)
    elif as_json or target != "workflow":
        _echo_json(result)
    else:
        click.echo(yaml.safe_dump(result, sort_keys=False, width=100))


def _submit_action(library: TemplateLibrary, name: str, given: dict[str, Any], target: str,
                   dry_run: bool, as_json: bool, inputs: tuple[str, ...], toy_inputs: bool,
                   workdir: Path | None, config_path: Path | None, data_dir: Path | None,
                   payload_dir: Path | None = None) -> None:
    from epic_wfms.templates.submit import default_workdir, render_for_submission, submit
    from epic_wfms.templates.workflow_runner import LocalRunOptions

    config = load_config(config_path, data_dir=data_dir)
    db = open_database(config)
    try:
        workflow = render_for_submission(db, library, name, given)
        bound = {k: Path(v) for k, v in parse_assignments(list(inputs)).items()}
        local = LocalRunOptions(workdir=workdir or default_workdir(config.data_dir, workflow),
                                inputs=bound, toy_inputs=toy_inputs)
        if payload_dir is not None:  # an imported workflow's own files (its directory)
            local.payload_dir = payload_dir
        result = submit(db, workflow, target, dry_run, local,
                        submitters={} if dry_run else template_submitters(config, db))
    finally:
        db.dispose()
    if as_json:
        _echo_json(result)
    else:
        _print_submission(result)
    if result.get("status") == SubmissionStatus.FAILED:
        raise SystemExit(1)


def _print_submission(result: dict[str, Any]) -> None:
    console = Console(width=160)
    console.print(f"submission {result['submission_id']}: [bold]{result['status']}[/bold] "
                  f"(rendered {result['rendered_hash'][:12]})")
    if "steps" in result:
        for step, status in result["steps"].items():
            console.print(f"  {step}: {status}")
        console.print(f"runtime: {result['runtime_note']}")
        console.print(f"work directory: {result['workdir']}")
        if result.get("error"):
            console.print(f"[red]{result['error']}[/red]")
    elif result.get("target") == "panda":
        for task in result["spec"]["tasks"]:
            console.print(f"  task {task['taskName']} ({task['prodSourceLabel']}, priority "
                          f"{task['taskPriority']})")
    else:  # idds: the workflow JSON is in --json; here its works
        spec = result["spec"]
        console.print(f"  iDDS workflow {spec['name']}: {len(spec['works'])} works, loops: "
                      + (", ".join(spec["loops"]) or "none"))
        for work in spec["works"]:
            console.print(f"  work {work}")
        if result.get("idds_request_id") is not None:
            console.print(f"iDDS request {result['idds_request_id']} at "
                          f"{result['response'].get('host', '')}; follow it with: "
                          f"[bold]{result['next']}[/bold] (--config or EPIC_IDDS_HOST / "
                          "EPIC_IDDS_TOKEN_FILE name the server)")


def _value_option(name: str, dest: str, help_text: str, multiple: bool = False,
                  path: bool = False):
    def make() -> click.Option:
        return click.Option([name, dest], multiple=multiple,
                            default=None if not multiple else (),
                            type=click.Path(path_type=Path) if path else str, help=help_text)
    return make


@template_cli.command("history")
@click.option("--limit", default=20, show_default=True, help="Newest submissions to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with each local run's jobs).")
@click.option("--config", "config_path", type=click.Path(path_type=Path, exists=True),
              default=None, help="YAML configuration (docs/configuration.md).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where the store lives (default .epic-wfms).")
def history(limit: int, as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """Recorded submissions: template version, target, status, rendered hash."""
    from epic_wfms.templates.records import step_runs, submissions

    try:
        db = open_database(load_config(config_path, data_dir=data_dir))
    except EpicWfmsError as error:
        raise _fail(error) from None
    try:
        rows = submissions(db, limit)
        if as_json:
            for row in rows:
                row["jobs"] = step_runs(db, row["id"])
    finally:
        db.dispose()
    if as_json:
        _echo_json(rows)
        return
    table = Table("id", "template", "version", "target", "status", "rendered", "campaign")
    for row in rows:
        table.add_row(str(row["id"]), row["template"], row["version"],
                      row["target"] + (" (dry run)" if row["dry_run"] else ""), row["status"],
                      row["rendered_hash"][:12], row["campaign"])
    Console(width=160).print(table)


render_group = _PerTemplate(
    "render", help="Render a template with parameters to a target (default: the workflow).",
    action=_render_action,
    extra=[_target_option("workflow", ("workflow", *TARGETS)),
           _flag("--json", "as_json", "Print JSON.")])
submit_group = _PerTemplate(
    "submit", help="Render and submit: run locally, or to the configured PanDA "
    "(wfms.panda) or iDDS (wfms.idds); --dry-run records only.",
    action=_submit_action,
    extra=[_target_option("local", ("local", "panda", "idds")),
           _flag("--dry-run", "dry_run",
                 "Render, record and print what would be submitted; run nothing."),
           _flag("--json", "as_json", "Print JSON."),
           _value_option("--input", "inputs", "Bind an external dataset to a local directory:"
                         " DATASET=DIR (repeatable; local target).", multiple=True),
           _flag("--toy-inputs", "toy_inputs", "Write small toy files for unbound external "
                 "datasets (local dress rehearsal)."),
           _value_option("--workdir", "workdir",
                         "Local work directory (default under the data dir).", path=True),
           _value_option("--payload-dir", "payload_dir",
                         "Directory each local job sees as payloads/ (default: the shipped "
                         "ePIC payloads; an imported Snakefile: its directory).", path=True),
           _value_option("--config", "config_path",
                         "YAML configuration (docs/configuration.md).", path=True),
           _value_option("--data-dir", "data_dir",
                         "Where the store lives (default .epic-wfms).", path=True)])
template_cli.add_command(render_group)
template_cli.add_command(submit_group)


@template_cli.command("import")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--name", default=None, help="Template name (default: from the file).")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Write the template here (default: <name>.yaml in the current directory).")
@click.option("--configfile", type=click.Path(path_type=Path, exists=True), default=None,
              help="Snakemake: the config to import with (default: its configfile:).")
@click.option("--cwl-inputs", type=click.Path(path_type=Path, exists=True), default=None,
              help="CWL: values of the workflow inputs (pchain's --yaml file).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def import_command(file: Path, name: str | None, out: Path | None, configfile: Path | None,
                   cwl_inputs: Path | None, as_json: bool) -> None:
    """Turn a CWL workflow (PanDA's pchain subset) or a Snakefile into a template.

    The template is written as YAML, then checked like `template validate` (rendered with
    its examples to every target). Render or submit it by its file name."""
    from epic_wfms.templates.importers import import_workflow

    try:
        language, data = import_workflow(file, name, configfile, cwl_inputs)
        target = out or Path(f"{data['template']}.yaml")
        target.write_text(f"# imported by epic-wfms from {language} workflow {file.name}\n"
                          + yaml.safe_dump(data, sort_keys=False, width=100))
        spec, digest = load_template_file(target)
        tags = TagCatalogue(default_tag_dir(default_template_dir()))
        steps, targets, refused = check_template(spec, digest, tags)
    except EpicWfmsError as error:
        raise _fail(error) from None
    result = {"file": str(target), "template": spec.template, "language": language,
              "parameters": {p: s.type for p, s in spec.parameters.items()},
              "steps": [s.get("name") for s in spec.steps], "rendered_steps": steps,
              "targets": targets, "refused": refused}
    if as_json:
        _echo_json(result)
        return
    click.echo(f"{target}: template {spec.template} from {language} ({len(spec.steps)} steps, "
               f"{steps} when rendered with its defaults; "
               f"{_describe_targets(targets, refused)})")
    click.echo("parameters: " + ", ".join(f"{p} ({s})" for p, s in result["parameters"].items()))
    hint = " --payload-dir " + str(file.resolve().parent) if language == "snakemake" else ""
    click.echo(f"next: epic-wfms template submit {target} --user $USER{hint}")
