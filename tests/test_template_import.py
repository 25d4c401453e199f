"""`epic-wfms template import`: workflows we did not write become templates that render to
every target and run locally.

- tests/data/snakemake_tutorial: the Snakemake tutorial's workflow (its shape; POSIX stand-ins
  for bwa/samtools/bcftools), read by Snakemake's own API. The imported template's local run
  must give exactly what `snakemake` itself gives on the same files.
- tests/data/pchain/sig_bg_comb.cwl: PanDA's pchain example from the PanDA documentation.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from epic_wfms.cli.main import cli
from epic_wfms.cli.template import check_template
from epic_wfms.store.database import Database
from epic_wfms.templates import TemplateError
from epic_wfms.templates.importers import import_workflow
from epic_wfms.templates.loader import TemplateLibrary
from epic_wfms.templates.render import CompiledTemplate
from epic_wfms.templates.schema import TemplateSpec
from epic_wfms.templates.tags import TagCatalogue, default_tag_dir
from epic_wfms.templates.targets import render_target
from epic_wfms.templates.workflow_runner import LocalRunOptions, run_local

DATA = Path(__file__).parent / "data"
TAGS = TagCatalogue(default_tag_dir(TemplateLibrary().directory))


@pytest.fixture
def db(tmp_path: Path):
    database = Database(f"sqlite:///{tmp_path / 'store.sqlite'}")
    database.create_schema()
    yield database
    database.dispose()


@pytest.fixture(autouse=True)
def _host(monkeypatch):
    monkeypatch.setenv("EPIC_CONTAINER_RUNTIME", "host")


@pytest.fixture
def tutorial(tmp_path: Path) -> Path:
    """A copy of the tutorial workflow (Snakemake writes .snakemake/ and its outputs there)."""
    return Path(shutil.copytree(DATA / "snakemake_tutorial", tmp_path / "tutorial"))


def outputs(report: dict, workdir: Path, suffix: str) -> list[Path]:
    return [workdir / "datasets" / ds.split(":")[0] / ds.split(":")[1] / name
            for ds, names in report["outputs"].items() if ds.endswith(suffix) for name in names]


def test_a_snakefile_becomes_a_template_that_runs_like_snakemake(tutorial, db, tmp_path):
    language, data = import_workflow(tutorial / "Snakefile", name="tutorial")
    assert language == "snakemake"
    spec = TemplateSpec.model_validate(data)
    params = spec.parameters
    assert (params["prior_mutation_rate"].type, params["prior_mutation_rate"].default) == (
        "number", 0.001)
    assert (params["samples_a"].type, params["samples_a"].default) == (
        "string", "data/samples/A.fastq")
    assert (params["sample"].type, params["sample"].default) == ("list", ["A", "B"])
    assert [s["name"] for s in spec.steps] == ["bwa_map", "samtools_sort", "samtools_index",
                                               "bcftools_call", "plot_quals"]
    assert check_template(spec, "snakemake", TAGS)[0] == 8  # every target renders
    workflow = CompiledTemplate(spec, "snakemake", TAGS).render({"user": "jdoe"})
    assert workflow.step("samtools_sort_a").depends_on == ["bwa_map_a"]
    assert workflow.step("bwa_map_a").resources.cores == 8  # threads: 8
    assert sorted(workflow.step("bcftools_call").depends_on) == [
        "samtools_index_a", "samtools_index_b", "samtools_sort_a", "samtools_sort_b"]
    tasks = render_target(workflow, "panda")["tasks"]
    assert len(tasks) == 8 and all(t["prodSourceLabel"] == "user" for t in tasks)

    report = run_local(db, workflow, LocalRunOptions(workdir=tmp_path / "run",
                                                     payload_dir=tutorial))
    assert report["status"] == "finished", report["error"]
    [ours] = outputs(report, tmp_path / "run", "_quals.svg")
    native = subprocess.run([sys.executable, "-m", "snakemake", "-c1", "--quiet", "all"],
                            cwd=tutorial, capture_output=True, text=True,
                            env={**os.environ, "PANDA_BEHIND_REAL_LB": "1"})
    assert native.returncode == 0, native.stderr[-2000:]
    assert ours.read_text() == (tutorial / "plots" / "quals.svg").read_text()
    assert "prior 0.001" in ours.read_text()


def test_imported_parameters_steer_the_workflow(tutorial):
    _, data = import_workflow(tutorial / "Snakefile", name="tutorial")
    spec = TemplateSpec.model_validate(data)
    workflow = CompiledTemplate(spec, "x", TAGS).render(
        {"user": "jdoe", "sample": "B", "prior_mutation_rate": 0.01,
         "samples_b": "data/samples/A.fastq"})
    assert [s.name for s in workflow.steps] == ["bwa_map_b", "samtools_sort_b",
                                                "samtools_index_b", "bcftools_call",
                                                "plot_quals"]
    assert "payloads/data/samples/A.fastq" in workflow.step("bwa_map_b").payload.command
    assert "echo 'prior 0.01'" in workflow.step("bcftools_call").payload.command


def test_a_snakefile_outside_the_subset_is_refused_with_the_rule(tmp_path):
    (tmp_path / "Snakefile").write_text(
        'rule all:\n    input: "b.txt"\n\n'
        'rule a:\n    output: "a.txt"\n    run:\n        open(output[0], "w").write("x")\n\n'
        'rule b:\n    input: "a.txt"\n    output: "b.txt"\n    shell: "cp {input} {output}"\n')
    with pytest.raises(TemplateError, match=r"rules outside .* a \(its action is not shell:\)"):
        import_workflow(tmp_path / "Snakefile")
    (tmp_path / "Snakefile").write_text('rule a:\n    output: "a.txt"\n    shel: "date"\n')
    with pytest.raises(TemplateError, match="Snakemake cannot load"):
        import_workflow(tmp_path / "Snakefile")


def test_shell_braces_survive_as_text_not_jinja(tmp_path, db):
    """`${#x}` and `{{`..`}}` in a shell command are shell, not template syntax."""
    (tmp_path / "Snakefile").write_text(
        'rule count:\n    output: "n.txt"\n'
        '    shell: "x=abc; echo ${{#x}} {{{{ }}}} > {output}"\n')
    _, data = import_workflow(tmp_path / "Snakefile", name="braces")
    workflow = CompiledTemplate(TemplateSpec.model_validate(data), "x", TAGS).render(
        {"user": "jdoe"})
    assert workflow.step("count").payload.command == "x=abc; echo ${#x} {{ }} > n.txt"
    report = run_local(db, workflow, LocalRunOptions(workdir=tmp_path / "run"))
    assert report["status"] == "finished", report["error"]
    [out] = outputs(report, tmp_path / "run", "_n.txt")
    assert out.read_text() == "3 {{ }}\n"


def test_panda_docs_pchain_workflow_imports_and_runs_locally(db, tmp_path):
    language, data = import_workflow(DATA / "pchain" / "sig_bg_comb.cwl",
                                     cwl_inputs=DATA / "pchain" / "sig_bg_comb.yaml")
    assert language == "cwl"
    spec = TemplateSpec.model_validate(data)
    assert spec.parameters["signal"].type == "string"
    assert check_template(spec, "cwl", TAGS)[0] == 6
    workflow = CompiledTemplate(spec, "cwl", TAGS).render({"user": "jdoe"})
    assert workflow.step("combine").depends_on == ["make_signal", "premix", "make_background_2"]
    assert workflow.step("generate_some").jobs == 10
    assert workflow.step("make_signal").payload.image == "busybox"
    inputs = yaml.safe_load((DATA / "pchain" / "sig_bg_comb.yaml").read_text())
    bound = {}
    for name, count in (("signal", 7), ("background", 2)):
        directory = tmp_path / "in" / name
        directory.mkdir(parents=True)
        for k in range(count):
            (directory / f"{name}.{k:03d}.root").write_text(f"{name} {k}\n")
        bound[inputs[name]] = directory
    report = run_local(db, workflow, LocalRunOptions(workdir=tmp_path / "run", inputs=bound))
    assert report["status"] == "finished", report["error"]
    assert len(outputs(report, tmp_path / "run", "make_signal_abc.dat")) == 2  # 5 per job
    assert len(outputs(report, tmp_path / "run", "generate_some_gen.root")) == 10
    signal = outputs(report, tmp_path / "run", "make_signal_abc.dat")
    assert "signal.000.root" in signal[0].read_text()  # %IN: the job's signal files
    combined = [p.read_text() for p in outputs(report, tmp_path / "run", "combine_aaa.root")]
    assert len(combined) == 1 and all(  # %IN, %IN2, %IN3: the three upstream streams
        "abc.dat" in text and "klm.root" in text and "ooo.root" in text for text in combined)


def test_cli_imports_validates_and_submits(tutorial, tmp_path):
    runner = CliRunner()
    out = tmp_path / "tutorial.yaml"
    imported = runner.invoke(cli, ["template", "import", str(tutorial / "Snakefile"), "--name",
                                   "tutorial", "--out", str(out), "--json"])
    assert imported.exit_code == 0, imported.output
    result = json.loads(imported.output)
    assert result["language"] == "snakemake" and result["rendered_steps"] == 8
    assert runner.invoke(cli, ["template", "validate", str(out)]).exit_code == 0
    ran = runner.invoke(cli, ["template", "submit", str(out), "--user", "jdoe", "--sample", "A",
                              "--payload-dir", str(tutorial), "--json",
                              "--data-dir", str(tmp_path / "data")])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.output)["steps"] == {
        "bwa_map_a": "finished", "samtools_sort_a": "finished",
        "samtools_index_a": "finished", "bcftools_call": "finished", "plot_quals": "finished"}
    cwl = runner.invoke(cli, ["template", "import", str(DATA / "pchain" / "sig_bg_comb.cwl"),
                              "--out", str(tmp_path / "sig.yaml")])
    assert cwl.exit_code == 0 and "signal (string)" in cwl.output
    wrong = runner.invoke(cli, ["template", "import", str(DATA / "pchain" / "sig_bg_comb.yaml")])
    assert wrong.exit_code != 0 and "cannot tell the workflow language" in wrong.output
