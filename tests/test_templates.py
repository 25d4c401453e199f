"""Workflow templates: every shipped template validates, renders to every target and runs to
completion on the embedded backend; bad parameters and broken templates get messages that
name the parameter, the bad value, what was expected and the closest valid choice."""

from __future__ import annotations

import json
import os
import shutil
import sys
from functools import partial
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
import yaml
from click.testing import CliRunner
from idds.common.constants import WorkStatus
from sqlalchemy import select

from epic_wfms.cli.main import cli
from epic_wfms.cli.template import check_template
from epic_wfms.store.database import Database
from epic_wfms.store.schema import ProductionTagUsageRecord, TemplateSubmissionRecord
from epic_wfms.templates import (
    ParameterError,
    TagError,
    TagImmutableError,
    TemplateError,
    TemplateLibrary,
    render_template,
)
from epic_wfms.templates.errors import TargetError
from epic_wfms.templates.records import step_runs
from epic_wfms.templates.render import CompiledTemplate, example_values
from epic_wfms.templates.schema import TemplateSpec
from epic_wfms.templates.submit import render_for_submission, submit
from epic_wfms.templates.tags import TagCatalogue, default_tag_dir
from epic_wfms.templates.targets.cwl import export_cwl, import_cwl
from epic_wfms.templates.targets.idds import (
    build_idds_workflow,
    load_idds_workflow,
    render_idds,
)
from epic_wfms.templates.targets.local import render_local
from epic_wfms.templates.targets.panda import render_panda
from epic_wfms.templates.workflow_runner import LocalRunOptions, run_local
from epic_wfms.wfms.idds import files
from epic_wfms.wfms.idds.works import EpicPandaWork
from epic_wfms.wfms.panda.taskparams import PRUN_RUNNER, complete_for_site, complete_rendered

LIBRARY = TemplateLibrary()
NAMES = LIBRARY.names()
TAGS = TagCatalogue(default_tag_dir(LIBRARY.directory))
SMALL = {  # small parameters that still exercise every step, loop and condition
    "simulation_campaign": {"events": 4, "events_per_job": 2, "q2_bins": "1,10"},
    "ml_training_hpo": {"events": 2, "events_per_job": 2, "max_trials": 4},
    "calibration": {"run": 5, "tolerance": 0.05},
    "reprocessing": {"runs": "5,6"},
    "streaming_reco": {"run": 5, "merge_every": 2},
    "fast_monitoring": {"run": 5},
    "first_pass_reco": {"run": 5, "min_stfs": 3},
    "user_analysis": {"user": "jdoe", "files_per_job": 2,
                      "input_dataset": "epic:epic.26.11.0.p1001_r1001.eicrecon_reco.root",
                      "code": "https://github.com/eic/tutorial-analysis@3f2a9c1"},
}


def small(name: str) -> dict:
    spec, _ = LIBRARY.load(name)
    return {**example_values(spec), **SMALL.get(name, {})}


@pytest.fixture
def db(tmp_path: Path):
    database = Database(f"sqlite:///{tmp_path / 'store.sqlite'}")
    database.create_schema()
    yield database
    database.dispose()


@pytest.fixture(autouse=True)
def _fast_python(monkeypatch):
    """Payload commands say python3: use this interpreter, not a slow version-manager shim."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("EPIC_CONTAINER_RUNTIME", "host")


def test_one_template_per_epic_use_case():
    use_cases = {LIBRARY.load(n)[0].use_case for n in NAMES}
    assert use_cases == {"streaming_reco", "fast_monitoring", "first_pass_reco", "calibration",
                         "simulation", "reprocessing", "analysis", "ml_training"}


@pytest.mark.parametrize("name", NAMES)
def test_template_validates_and_renders_to_every_target(name):
    spec, digest = LIBRARY.load(name)
    assert check_template(spec, digest, TAGS)[0] >= 2
    workflow = render_template(name, small(name), LIBRARY)
    assert workflow.template_hash == digest and len(workflow.rendered_hash) == 64
    panda = render_panda(workflow)
    assert len(panda["tasks"]) == len(workflow.steps)
    assert all(t["vo"] == "epic" for t in panda["tasks"])
    idds_spec = render_idds(workflow)
    if idds_spec.get("unsupported") is None:
        idds = load_idds_workflow(idds_spec["workflow"])
        assert len(idds.template.works) == len(workflow.steps)
    else:  # a loop iDDS cannot decide (no tolerance): refused at submit, rendered here
        assert any(s.loop and s.loop.tolerance is None for s in workflow.steps), idds_spec
    cwl = yaml.safe_load(export_cwl(workflow))
    assert cwl["class"] == "Workflow" and list(cwl["steps"]) == [s.name for s in workflow.steps]
    assert all(s["run"] == "prun" for s in cwl["steps"].values())
    assert [s["step"] for s in render_local(workflow)["steps"]] == [s.name for s in workflow.steps]


@pytest.mark.parametrize("name", NAMES)
def test_template_runs_to_completion_on_the_embedded_backend(name, db, tmp_path):
    workflow = render_template(name, small(name), LIBRARY)
    report = run_local(db, workflow, LocalRunOptions(workdir=tmp_path / "run", toy_inputs=True))
    assert report["status"] == "finished", report["error"]
    assert set(report["steps"].values()) == {"finished"}
    for step in workflow.steps:  # every output dataset holds the files its jobs wrote
        for output in step.outputs:
            files = report["outputs"][output.dataset]
            assert files and all(f.endswith(output.file) for f in files)
    with db.session() as session:
        record = session.get(TemplateSubmissionRecord, report["submission_id"])
        assert record.status == "finished" and record.template_version == "1.0.0"
        assert record.rendered_hash == workflow.rendered_hash
        first = record.rendered["steps"][0]["payload"]["command"]
        assert first == workflow.steps[0].payload.command
        assert "directly on the host" in record.runtime
    runs = step_runs(db, report["submission_id"])
    assert {r["step"] for r in runs} >= {s.name for s in workflow.steps}
    assert all(r["runtime"] == "host" for r in runs)
    for step in workflow.steps:
        if step.loop:  # iterated, and the check decided
            assert 1 <= report["iterations"][step.name] <= step.loop.max_iterations
            assert any(r["step"] == f"{step.name}:check" and r["exit_code"] == 0 for r in runs) \
                or step.loop.on_exhausted == "accept"


def test_calibration_loop_iterates_until_convergence(db, tmp_path):
    tight = render_template("calibration", {"run": 9, "tolerance": 0.001}, LIBRARY)
    report = run_local(db, tight, LocalRunOptions(workdir=tmp_path / "a", toy_inputs=True))
    checks = [r for r in step_runs(db, report["submission_id"]) if r["step"] == "calib_loop:check"]
    assert report["status"] == "finished" and report["iterations"]["calib_loop"] == len(checks)
    assert [c["exit_code"] == 0 for c in checks] == [False] * (len(checks) - 1) + [True]
    assert len(checks) > 3
    few = render_template("calibration", {"run": 9, "tolerance": 0.001, "max_iterations": 2},
                          LIBRARY)
    report = run_local(db, few, LocalRunOptions(workdir=tmp_path / "b", toy_inputs=True))
    assert report["status"] == "failed" and report["steps"]["calib_loop"] == "failed"
    assert "did not converge in 2 iterations" in report["error"]
    assert report["steps"]["reco_calibrated"] == "skipped"  # calibration never became ready


def test_unmet_input_condition_names_the_dataset(db, tmp_path):
    workflow = render_template("streaming_reco", {"run": 77}, LIBRARY)
    report = run_local(db, workflow, LocalRunOptions(workdir=tmp_path / "run"))
    assert report["status"] == "failed"
    assert "input_ready epic:swf.000077.E1_BNL" in report["error"]
    assert "--input epic:swf.000077.E1_BNL=DIR" in report["error"]
    stfs = tmp_path / "stfs"
    stfs.mkdir()
    for seq in range(3):
        (stfs / f"swf.000077.{seq:06d}.stf").write_text(json.dumps({"events": 5}))
    bound = LocalRunOptions(workdir=tmp_path / "run2", inputs={"epic:swf.000077.E1_BNL": stfs})
    assert run_local(db, workflow, bound)["status"] == "finished"


def _toy_template(directory: Path, body: dict) -> str:
    base = {"template": "toy", "version": "0.1.0", "use_case": "analysis",
            "campaign": {"name": "toy", "activity": "analysis", "user": "jdoe",
                         "retry": {"mode": "failed_parts", "max_attempts": 2}},
            "parameters": {}, "steps": []}
    path = directory / "toy.yaml"
    path.write_text(yaml.safe_dump({**base, **body}))
    return str(path)


def test_failed_jobs_are_retried_by_the_campaign_policy(db, tmp_path):
    flaky = ("test -f ../tried || { touch ../tried; exit 3; }; echo '{\"events\": 1}' > out.json")
    step = {"name": "flaky", "payload": {"image": "eicweb/eic_xl:25.05.0-stable",
                                         "command": flaky, "origin": "user", "source": "x@1"},
            "outputs": [{"datatype": "out", "file": "out.json"}]}
    path = _toy_template(tmp_path, {"steps": [step]})
    workflow = render_template(path, {}, TemplateLibrary(tmp_path))
    report = run_local(db, workflow, LocalRunOptions(workdir=tmp_path / "run"))
    assert report["status"] == "finished"
    attempts = [(r["attempt"], r["status"], r["exit_code"])
                for r in step_runs(db, report["submission_id"])]
    assert attempts == [(1, "failed", 3), (2, "finished", 0)]


def test_rendering_is_deterministic():
    one = render_template("simulation_campaign", {"events": 100}, LIBRARY)
    two = render_template("simulation_campaign", {"events": 100}, LIBRARY)
    assert one.model_dump() == two.model_dump() and one.rendered_hash == two.rendered_hash
    other = render_template("simulation_campaign", {"events": 101}, LIBRARY)
    assert other.rendered_hash != one.rendered_hash
    assert other.template_hash == one.template_hash


def test_dataset_names_follow_the_documented_rule():
    workflow = render_template("simulation_campaign",
                               {"events": 10, "q2_bins": "1,10", "campaign_name": "26.02.0"},
                               LIBRARY)
    reco = workflow.step("eicrecon_10").outputs[0].dataset
    assert reco == "epic:epic.26.02.0.p1001_e1001_s1001_r1001_k1001.eicrecon_10_reco.edm4eic.root"
    npsim = workflow.step("npsim_1")
    assert npsim.inputs[0].datasets == [workflow.step("evgen_1").outputs[0].dataset]
    user = render_template("user_analysis", small("user_analysis"), LIBRARY)
    assert user.steps[0].outputs[0].dataset.startswith("user.jdoe:user.jdoe.26.11.0.notag.")


@pytest.mark.parametrize(("values", "parameter", "bad", "expected", "suggestion"), [
    ({"events": 10, "beam": "18x257"}, "beam", "18x257", "one of 5x41", "18x275"),
    ({"events": 10, "beam": "10X100"}, "beam", "10X100", "one of", "10x100"),
    ({"events": -5}, "events", -5, "an integer in [1, 100000000] (events)", "1"),
    ({"events": "many"}, "events", "many", "an integer", None),
    ({"events": 10, "with_background": "maybe"}, "with_background", "maybe", "true or false",
     None),
    ({"events": 10, "q2bins": "1"}, "q2bins", "1", "a parameter of this template", "q2_bins"),
    ({}, "events", None, "a value (required)", "20"),
    ({"events": 10, "q2_bins": "10,-3"}, "q2_bins", -3.0, "in [0, 100000] (GeV^2)", "0"),
])
def test_bad_parameters_are_refused_with_a_useful_message(values, parameter, bad, expected,
                                                          suggestion):
    with pytest.raises(ParameterError) as caught:
        render_template("simulation_campaign", values, LIBRARY)
    error = caught.value
    assert (error.parameter, error.value, error.suggestion) == (parameter, bad, suggestion)
    assert expected in error.why
    text = str(error)
    assert repr(bad) in text and f"parameter {parameter!r}" in text
    if suggestion:
        assert f"did you mean {suggestion}?" in text


@pytest.mark.parametrize(("values", "message"), [
    ({"events": 10, "physics": "p1010"}, "unknown tag 'p1010'"),
    ({"events": 10, "physics": "e1001"}, "'e1001' is not a physics tag"),
])
def test_bad_tags_are_refused(values, message):
    with pytest.raises(TagError, match=message) as caught:
        render_template("simulation_campaign", values, LIBRARY)
    assert "did you mean" in caught.value.fix


BROKEN = {
    "not yaml": ("template: [x\n", "is not valid YAML"),
    "undefined name": ({"parameters": {"events": {"type": "integer", "default": 1}},
                        "steps": [{"name": "a",
                                   "payload": {"image": "i", "command": "run {{ evnts }}"},
                                   "outputs": [{"datatype": "o", "file": "o.json"}]}]},
                       "'evnts' is undefined"),
    "misspelt field": ({"steps": [{"name": "a", "payload": {"image": "i", "command": "c"},
                                   "resourses": {"cores": 2},
                                   "outputs": [{"datatype": "o", "file": "o.json"}]}]},
                       "resourses: Extra inputs are not permitted"),
    "unknown dependency": ({"steps": [{"name": "a", "payload": {"image": "i", "command": "c"},
                                       "after": ["b"],
                                       "outputs": [{"datatype": "o", "file": "o.json"}]}]},
                           "step a depends on 'b'"),
    "cycle": ({"steps": [{"name": n, "payload": {"image": "i", "command": "c"}, "after": [d],
                          "outputs": [{"datatype": "o", "file": f"{n}.json"}]}
                         for n, d in (("a", "b"), ("b", "a"))]}, "depend on each other"),
    "untraceable user payload": ({"steps": [{"name": "a", "payload": {
        "image": "i", "command": "c", "origin": "user"},
        "outputs": [{"datatype": "o", "file": "o.json"}]}]}, "needs 'source'"),
    "bad parameter schema": ({"parameters": {"x": {"type": "tag"}}}, "needs tag_kind"),
    "required without example": ({"parameters": {"x": {"type": "integer", "required": True}},
                                  "steps": [{"name": "a", "payload": {"image": "i", "command": "c"},
                                             "outputs": [{"datatype": "o", "file": "o.json"}]}]},
                                 "required parameter x has no example"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_templates_are_reported_by_validate(case, tmp_path):
    body, message = BROKEN[case]
    if isinstance(body, str):
        path = tmp_path / "toy.yaml"
        path.write_text(body)
    else:
        path = Path(_toy_template(tmp_path, body))
    result = CliRunner().invoke(cli, ["template", "validate", str(path)])
    assert result.exit_code == 1, result.output
    assert "INVALID" in result.output and message in result.output


def test_dependency_typo_gets_a_suggestion(tmp_path):
    steps = [{"name": "npsim", "payload": {"image": "i", "command": "c"},
              "outputs": [{"datatype": "o", "file": "o.json"}]},
             {"name": "reco", "payload": {"image": "i", "command": "c"}, "after": ["npsm"],
              "outputs": [{"datatype": "r", "file": "r.json"}]}]
    path = _toy_template(tmp_path, {"steps": steps})
    with pytest.raises(TemplateError, match="did you mean npsim"):
        render_template(path, {}, TemplateLibrary(tmp_path))


def test_extends_and_include_merge_parameters_and_steps():
    spec, _ = LIBRARY.load("ml_training_hpo")
    names = [s["name"] for s in spec.steps]
    assert names == ["evgen", "npsim", "merge_background", "eicrecon", "train", "evaluate"]
    assert spec.parameters["with_background"].default is False  # overridden by the child
    assert "campaign_name" in spec.parameters  # from _epic_common.yaml via the base
    workflow = render_template("ml_training_hpo", {"events": 10}, LIBRARY)
    assert "merge_background_10" not in [s.name for s in workflow.steps]
    train = workflow.step("train")
    assert train.resources.gpus == 1 and train.sites == ["BNL_GPU"]
    assert workflow.campaign.working_group == "EPIC_AI"


def test_a_tag_used_in_production_is_immutable(db, tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(LIBRARY.directory, templates, ignore=shutil.ignore_patterns("__pycache__"))
    library = TemplateLibrary(templates)
    workflow = render_for_submission(db, library, "first_pass_reco", {"run": 8})
    report = submit(db, workflow, "local", local=LocalRunOptions(workdir=tmp_path / "run",
                                                                 toy_inputs=True))
    assert report["status"] == "finished"
    with db.session() as session:
        used = {r.tag for r in session.scalars(select(ProductionTagUsageRecord))}
    assert used == {"p2001", "r1002"}
    catalogue = templates / "tags" / "r.yaml"
    catalogue.write_text(catalogue.read_text().replace("eicrecon: 1.25.0", "eicrecon: 1.26.0"))
    with pytest.raises(TagImmutableError, match="tag r1002 was used in production") as caught:
        render_for_submission(db, library, "first_pass_reco", {"run": 8})
    assert "define a new tag" in caught.value.fix
    # an unused tag may still be edited: r1001 changes and renders
    catalogue.write_text(catalogue.read_text().replace("eicrecon: 1.24.0", "eicrecon: 1.24.1"))
    assert render_for_submission(db, library, "simulation_campaign", {"events": 1})


def test_a_frozen_catalogue_tag_cannot_change(tmp_path):
    shutil.copytree(default_tag_dir(LIBRARY.directory), tmp_path / "tags")
    assert TagCatalogue(tmp_path / "tags").resolve("s1002", "s")["geometry"] == "epic_craterlake"
    catalogue = tmp_path / "tags" / "s.yaml"
    catalogue.write_text(catalogue.read_text().replace("physics_list: FTFP_BERT\n  frozen",
                                                       "physics_list: QGSP_BERT\n  frozen"))
    with pytest.raises(TagImmutableError, match="s1002 was frozen"):
        TagCatalogue(tmp_path / "tags").resolve("s1002", "s")


@pytest.mark.parametrize("name", NAMES)
def test_cwl_round_trip(name):
    """export -> import -> render -> export gives the same pchain workflow."""
    workflow = render_template(name, small(name), LIBRARY)
    first = export_cwl(workflow)
    imported = TemplateSpec.model_validate(import_cwl(first, name="imported"))
    again = export_cwl(CompiledTemplate(imported, "x", TAGS).render({"user": "jdoe"}))
    strip = lambda text: {k: v for k, v in yaml.safe_load(text).items() if k != "doc"}  # noqa: E731
    assert strip(again) == strip(first)


PCHAIN = """
cwlVersion: v1.0
class: Workflow
requirements:
  MultipleInputFeatureRequirement: {}
inputs: []
outputs:
  outDS:
    type: string
    outputSource: reco/outDS
steps:
  gen:
    run: prun
    in:
      opt_exec:
        default: "python3 payloads/epic_payload.py evgen --events 3 --beam 10x100 --q2-min 1
          --seed %RNDM:0 --out gen.hepmc3"
      opt_args:
        default: " --nJobs 2  --maxAttempt 1  --memory 3000  --outputs gen.hepmc3 --noBuild "
    out: [outDS]
  reco:
    run: prun
    in:
      opt_inDS: gen/outDS
      opt_inDsType:
        default: gen.hepmc3
      opt_exec:
        default: "python3 payloads/epic_payload.py eicrecon --inputs %IN --out reco.json"
      opt_args:
        default: " --outputs reco.json  --nFilesPerJob=1 --forceStaged "
    out: [outDS]
"""


def test_a_pchain_cwl_workflow_imports_and_runs_locally(db, tmp_path):
    spec = TemplateSpec.model_validate(import_cwl(PCHAIN, name="pchain_demo"))
    workflow = CompiledTemplate(spec, "cwl", TAGS).render({"user": "jdoe"})
    assert [s.name for s in workflow.steps] == ["gen", "reco"]
    assert workflow.step("gen").jobs == 2 and workflow.step("reco").depends_on == ["gen"]
    assert workflow.step("reco").inputs[0].files_per_job == 1
    report = run_local(db, workflow, LocalRunOptions(workdir=tmp_path / "run"))
    assert report["status"] == "finished", report["error"]
    reco = workflow.step("reco").outputs[0].dataset
    assert len(report["outputs"][reco]) == 2  # one reco job per generated file


def test_cli_lists_shows_renders_and_dry_runs(tmp_path):
    runner = CliRunner()
    listed = json.loads(runner.invoke(cli, ["template", "list", "--json"]).output)
    assert [t["name"] for t in listed] == NAMES
    shown = runner.invoke(cli, ["template", "show", "simulation_campaign"])
    assert "Electron x hadron beam energies" in shown.output
    helped = runner.invoke(cli, ["template", "submit", "simulation_campaign", "--help"])
    assert "--beam" in helped.output and "18x275" in helped.output and "--q2-bins" in helped.output
    rendered = runner.invoke(cli, ["template", "render", "calibration", "--run", "12",
                                   "--target", "panda", "--json"])
    tasks = json.loads(rendered.output)["tasks"]
    assert [t["taskName"].split(".")[-1] for t in tasks] == ["calib_loop/", "alignment/",
                                                              "reco_calibrated/"]
    bad = runner.invoke(cli, ["template", "render", "simulation_campaign", "--events", "5",
                              "-p", "beam=18x257"])
    assert bad.exit_code == 1 and "did you mean 18x275?" in bad.output
    typo = runner.invoke(cli, ["template", "render", "simulatoin_campaign"])
    assert typo.exit_code != 0 and "did you mean simulation_campaign?" in typo.output
    data = ["--data-dir", str(tmp_path / "data")]
    dry = runner.invoke(cli, ["template", "submit", "fast_monitoring", "--run", "3", "--target",
                              "panda", "--dry-run", "--json", *data])
    result = json.loads(dry.output)
    assert result["status"] == "dry-run" and result["spec"]["tasks"][0]["useJobCloning"]
    refused = runner.invoke(cli, ["template", "submit", "fast_monitoring", "--run", "3",
                                  "--target", "panda", *data])
    assert refused.exit_code == 1 and "no panda submitter" in refused.output
    ran = runner.invoke(cli, ["template", "submit", "streaming_reco", "--run", "3",
                              "--toy-inputs", "--json", *data])
    assert ran.exit_code == 0 and json.loads(ran.output)["status"] == "finished"
    history = json.loads(runner.invoke(cli, ["template", "history", "--json", *data]).output)
    assert [(h["template"], h["target"], h["status"]) for h in history] == [
        ("streaming_reco", "local", "finished"), ("fast_monitoring", "panda", "dry-run")]
    assert {j["step"] for j in history[0]["jobs"]} >= {"stf_reco", "merge"}


def test_migrations_create_exactly_the_modelled_tables(db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from epic_wfms.store.schema import Base

    with db.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_idds_target_runs_the_calibration_loop_as_looped_epic_panda_work():
    """The calibration template on iDDS: the loop step is the looped EpicPandaWork whose
    loop condition is the payload's residual vs the template's tolerance; the steps after it
    start on convergence and get the converged constant through the option that took the
    loop's files; each work carries the complete JEDI task the panda target renders."""
    workflow = render_template("calibration", {"run": 3, "tolerance": 0.25,
                                               "max_iterations": 4}, LIBRARY)
    spec = render_idds(workflow)
    assert spec.get("unsupported") is None and spec["loops"] == [spec["works"][0]]
    idds = load_idds_workflow(spec["workflow"])
    works = {w.task_name: w for w in idds.template.works.values()}
    assert all(isinstance(w, EpicPandaWork) for w in works.values())
    panda = {t["taskName"]: t for t in render_panda(workflow)["tasks"]}
    calib = works[f"{spec['works'][0]}/"]
    assert (calib.looped, calib.tolerance, calib.constant_argument) == (True, 0.25,
                                                                        "--previous")
    assert calib.task_parameters == complete_rendered(panda[calib.task_name])
    assert (calib.max_iterations, calib.accept_exhausted) == (4, False)  # the template's
    assert idds.template.loop_condition is not None
    align, reco = (works[f"{name}/"] for name in spec["works"][1:])
    assert (align.looped, align.constant_argument) == (False, None)
    assert (reco.looped, reco.constant_argument) == (False, "--calibration")
    # iDDS hands them the converged constant: no secondary input of the loop's outputs
    command = unquote("".join(i["value"] for i in reco.task_parameters["jobParameters"]
                              if i["type"] == "constant"))
    assert "eicrecon --inputs %IN --out reco.edm4eic.root" in command and "%IN2" not in command
    assert not reco.task_parameters.get("reuseSecOnDemand")
    assert [i["dataset"] for i in reco.task_parameters["jobParameters"]
            if i.get("param_type") == "input"] == ["epic:swf.000003.run"]
    # the conditions iDDS evaluates: converged -> both follow; not converged -> loop again
    calib.status, calib.output_data = WorkStatus.Finished, {"residual": 0.3}
    assert calib.is_not_converged() and not calib.is_converged()
    calib.output_data = {"residual": 0.2}
    assert calib.is_converged()
    assert len(idds.template.conditions) == 2
    # the iteration's task: renamed, given the previous constant; the reco: the converged one
    calib.num_run, calib.user_constant = 2, 1.5
    again = calib.task_to_submit()
    assert again["taskName"] == calib.task_name.removesuffix("/") + ".it2/"
    assert calib.get_work_name() == again["taskName"]
    assert "--previous=1.5" in unquote(json.dumps(again["jobParameters"]))
    reco.user_constant = 1.25
    assert "--calibration=1.25" in unquote(json.dumps(reco.task_to_submit()["jobParameters"]))


def test_idds_target_completes_the_tasks_for_the_installation_sites():
    """With the installation's wfms.panda (queues, transformation, no image), each task runs
    at the E1's queue with ePIC's transformation in front of prun's job format, without
    container, its production output files named after the task (and renamed with it)."""
    workflow = render_template("calibration", {"run": 3, "offline_alignment": False},
                               LIBRARY)
    complete = partial(complete_for_site, queues={"E1_BNL": "BNL_EPIC_PROMPT"},
                       transformation="http://trf.example/epic-reco", container_image=None)
    idds = build_idds_workflow(workflow, complete)
    calib, reco = idds.get_all_works()
    assert reco.task_parameters["site"] == "BNL_EPIC_PROMPT"
    params = calib.task_parameters
    assert (params["site"], params["transPath"]) == ("BNL_EPIC_PROMPT",
                                                     "http://trf.example/epic-reco")
    assert "container_name" not in params and "multiStepExec" not in params
    items = params["jobParameters"]
    assert items[0]["value"] == PRUN_RUNNER
    [output] = [i for i in items if i.get("param_type") == "output"]
    task = params["taskName"].removesuffix("/")
    assert output["value"] == f"{task}._${{SN/P}}.calib.json"
    assert f"'calib.json': '{output['value']}'" in "".join(str(i["value"]) for i in items)
    assert "$JEDITASKID" not in json.dumps(params)
    again = files.rename_outputs(params, ".it2")
    [output2] = [i for i in again["jobParameters"] if i.get("param_type") == "output"]
    assert output2["value"] == f"{task}.it2._${{SN/P}}.calib.json"
    assert f"'calib.json': '{output2['value']}'" in "".join(
        str(i["value"]) for i in again["jobParameters"])


def test_prun_runner_runs_the_job_format_with_epic_transformation(tmp_path, monkeypatch):
    """What a pilot runs for such a job: %IN becomes the inputs, the shipped payloads are
    there, the output is renamed to the file PanDA expects; the payload's report is left in
    jobReport.json (what iDDS's poller reads)."""
    from epic_wfms.wfms.payloads import calibrate, prun

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.stf").write_bytes(b"\x00\x01 not text \xff")
    command = quote("python3 payloads/epic_payload.py calibrate --inputs %IN --state s.json "
                    "--out calib.json --previous=0.5")
    code = prun.main(["-j", "", "--sourceURL", "https://x", "-r", ".", "-a", "None", "-o",
                      "{'calib.json': 't._000001.calib.json'}", "-i", "['a.stf']", "-p",
                      command])
    assert code == 0
    result = json.loads((tmp_path / "t._000001.calib.json").read_text())
    report = json.loads((tmp_path / "jobReport.json").read_text())
    expected = calibrate.iterate(0.5, b"\x00\x01 not text \xff")
    assert {k: report[k] for k in expected} == pytest.approx(expected)
    assert result["constant"] == report["constant"] and report["stf"] == "a.stf"
    assert prun.main(["-o", "{'other.json': 'x'}", "-i", "['a.stf']", "-p", "true"]) != 0


def _drop_tolerance(steps: list) -> None:
    steps[0]["loop"].pop("tolerance")


def _step_after_reco(steps: list) -> None:
    steps.append({**steps[2], "name": "later", "after": ["reco_calibrated"], "inputs": [],
                  "when": [], "outputs": [{"datatype": "reco", "file": "later.root"}]})


def _loop_as_primary(steps: list) -> None:
    steps[2]["inputs"] = [{"from": "calib_loop"}]


def _no_option(steps: list) -> None:
    steps[2]["payload"]["command"] = "python3 x.py %IN %IN2 --out reco.edm4eic.root"


@pytest.mark.parametrize(("change", "refusal"), [
    (_drop_tolerance, "has no tolerance"), (_step_after_reco, "depends on"),
    (_loop_as_primary, "primary input"), (_no_option, "without an option"),
])
def test_idds_target_refuses_what_idds_cannot_run(tmp_path, db, change, refusal):
    """Rendering still works (``unsupported`` says why); submitting refuses, dry run too."""
    directory = tmp_path / "library"
    shutil.copytree(LIBRARY.directory, directory)
    path = directory / "calibration.yaml"
    source = yaml.safe_load(path.read_text())
    change(source["steps"])
    path.write_text(yaml.safe_dump(source, sort_keys=False))
    workflow = render_template("calibration", {"run": 3}, TemplateLibrary(directory))
    spec = render_idds(workflow)
    assert refusal in spec["unsupported"] and spec["workflow"] is None
    assert "--target local" in spec["unsupported"]  # the fix names what runs it
    with pytest.raises(TargetError, match=refusal):
        submit(db, workflow, "idds", dry_run=True)


def test_validate_names_the_targets_that_refuse_a_template():
    """What `template submit --target idds` refuses, `template validate` says beforehand."""
    hpo = LIBRARY.directory / "ml_training_hpo.yaml"
    reco = LIBRARY.directory / "streaming_reco.yaml"
    result = CliRunner().invoke(cli, ["template", "validate", str(hpo), str(reco), "--json"])
    assert result.exit_code == 0, result.output
    checked = {Path(r["file"]).stem: r for r in json.loads(result.output)}
    assert checked["ml_training_hpo"]["targets"] == ["panda", "cwl", "local"]
    assert "has no tolerance" in checked["ml_training_hpo"]["refused"]["idds"]
    assert checked["streaming_reco"]["refused"] == {}
    assert "idds" in checked["streaming_reco"]["targets"]
    text = CliRunner().invoke(cli, ["template", "validate", str(hpo)]).output
    assert "targets panda, cwl, local; not idds: " in text and "has no tolerance" in text
