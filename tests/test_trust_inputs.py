"""Trust boundary of what users hand us (issue 15, items 3, 4, 11): template text runs no
code, parameters never become shell syntax, and every unusable file or value gets a
what/why/fix error instead of a traceback."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from epic_wfms.cli.main import cli
from epic_wfms.config import load_config
from epic_wfms.errors import ConfigurationError
from epic_wfms.model import stf_file
from epic_wfms.sites.catalogue import DEFAULT_SITE_DIR
from epic_wfms.store.database import Database
from epic_wfms.templates import TemplateError, TemplateLibrary, render_template
from epic_wfms.templates.targets.panda import produced_containers, prun_arguments
from epic_wfms.templates.workflow_runner import LocalRunOptions, run_local
from epic_wfms.wfms.payloads import reco
from tests.test_templates import SMALL

LIBRARY = TemplateLibrary()


@pytest.fixture(autouse=True)
def _host_python(monkeypatch):
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("EPIC_CONTAINER_RUNTIME", "host")


def toy(directory: Path, **step: object) -> Path:
    body = {"template": "toy", "version": "0.1.0", "use_case": "analysis",
            "campaign": {"name": "toy", "activity": "analysis", "user": "jdoe"},
            "parameters": {"n": {"type": "integer", "default": 3, "example": 3}},
            "steps": [{"name": "a", "payload": {"image": "eicweb/eic_xl:1", "command": "true"},
                       "outputs": [{"datatype": "out", "file": "out.json"}], **step}]}
    path = directory / "toy.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def validate(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["template", "validate", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception  # an error message, never a traceback
    return result.exit_code, result.output


# -- 3: template text runs no code ---------------------------------------------------------------
@pytest.mark.parametrize("expression", [
    "{{ cycler.__init__.__globals__.os.popen('touch %s').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ range.__self__.open('%s', 'w') }}",
    "{{ lipsum.__globals__['os'].system('touch %s') }}",
    "{% for x in range(10) %}{{ x }}{% endfor %}",
    "{% import 'os' as os %}",
])
def test_template_expressions_cannot_reach_python(tmp_path: Path, expression: str):
    marker = tmp_path / "pwned"
    path = toy(tmp_path, description=expression.replace("%s", str(marker)))
    code, output = validate(path)
    assert code == 1 and "INVALID" in output, output
    assert not marker.exists()


@pytest.mark.parametrize(("expression", "expected"), [
    ("{{ range(10**9) | list }}", "beyond the template limit"),
    ("{{ range(20000) | list }}", "templates may make at most"),
    ("{{ 'x' * 10**9 }}", "repeating a value"),
    ("{{ 2 ** (10 ** 9) }}", "beyond the template limit"),
    ("{{ 'x' | center(10**9) }}", "beyond the template limit"),
    ("{{ '%999999999d' % 1 }}", "format width"),
    ("{{ 'x'.ljust(10**9) }}", "beyond the template limit"),
    ("{{ ('x' * 100000) | replace('x', 'x' * 100000) }}", "beyond the template limit"),
])
def test_template_expressions_are_bounded(tmp_path: Path, expression: str, expected: str):
    code, output = validate(toy(tmp_path, description=expression))
    assert code == 1 and expected in output, output


def test_a_misspelt_name_in_a_whole_string_expression_says_undefined(tmp_path: Path):
    code, output = validate(toy(tmp_path, jobs="{{ nn }}"))
    assert code == 1 and "'nn' is undefined" in output and "did you mean n?" in output, output


# -- 4: parameters never become shell syntax -----------------------------------------------------
ATTACK = "q2>10'; touch {marker}; echo '$(touch {marker})`touch {marker}`"


def test_a_parameter_stays_one_argument_in_the_local_runner(tmp_path: Path):
    marker = tmp_path / "pwned"
    selection = ATTACK.format(marker=marker)
    workflow = render_template("user_analysis", {**SMALL["user_analysis"],
                                                 "selection": selection}, LIBRARY)
    db = Database(f"sqlite:///{tmp_path / 'store.sqlite'}")
    db.create_schema()
    report = run_local(db, workflow, LocalRunOptions(workdir=tmp_path / "run", toy_inputs=True))
    db.dispose()
    assert report["status"] == "finished", report["error"]
    assert not marker.exists()
    outputs = list((tmp_path / "run" / "steps").rglob("analysis.json"))
    assert outputs and all(json.loads(out.read_text())["selection"] == selection
                           for out in outputs)  # the value, verbatim, one argument


def test_a_parameter_stays_one_argument_in_the_panda_exec_string(tmp_path: Path):
    marker = tmp_path / "pwned"
    selection = ATTACK.format(marker=marker)
    workflow = render_template("user_analysis", {**SMALL["user_analysis"],
                                                 "selection": selection}, LIBRARY)
    step = workflow.steps[0]
    argv = prun_arguments(step, workflow, produced_containers(workflow))
    exec_string = argv[argv.index("--exec") + 1]
    # the pilot runs --exec with a shell: let a shell split it, and print each word
    words = subprocess.run(["sh", "-c", "printf '%s\\0' " + exec_string], capture_output=True,
                           check=True).stdout.decode().split("\0")[:-1]
    assert words[words.index("--selection") + 1] == selection
    assert words == shlex.split(exec_string) and not marker.exists()


def test_values_are_data_in_every_quoting_place_of_a_command(tmp_path: Path):
    """The author's shell (pipes, redirections, &&) works; a value is quoted for its place:
    outside quotes, inside '...', inside "...", and the runner's %IN file lists."""
    marker = tmp_path / "pwned"
    evil = f"a b'\"; touch {marker}; echo $(touch {marker}) `touch {marker}` \\"
    command = ("printf '%s\\n' {{ v }} '{{ v }}' \"{{ v }}\" \"x{{ v }}y\" %IN | "
               "cat > out.txt && test -s out.txt")
    path = toy(tmp_path, payload={"image": "eicweb/eic_xl:1", "command": command},
               outputs=[{"datatype": "out", "file": "out.txt"}],
               inputs=[{"dataset": "user.x:files"}])
    body = yaml.safe_load(path.read_text())
    body["parameters"] = {"v": {"type": "string", "default": "x", "example": "x"}}
    path.write_text(yaml.safe_dump(body))
    workflow = render_template(str(path), {"v": evil}, TemplateLibrary(tmp_path))
    db = Database(f"sqlite:///{tmp_path / 'store.sqlite'}")
    db.create_schema()
    files = tmp_path / "in $(touch x)"
    files.mkdir()
    (files / f"a;touch {marker.name}").write_text("{}")
    report = run_local(db, workflow, LocalRunOptions(workdir=tmp_path / "run",
                                                     inputs={"user.x:files": files}))
    db.dispose()
    assert report["status"] == "finished", report["error"]
    (out,) = (tmp_path / "run" / "steps").rglob("out.txt")
    assert out.read_text().splitlines() == [evil, evil, evil, f"x{evil}y",
                                            str(files / f"a;touch {marker.name}")]
    assert not marker.exists() and not (tmp_path / "run" / "steps" / "a" / "x").exists()


@pytest.mark.parametrize(("command", "expected"), [
    ("python3 x.py --a '{{ n }}", "single quote is not closed"),
    ("echo \\{{ n }}", "backslash right before a value"),  # it would unquote the value
])
def test_commands_that_would_unquote_a_value_are_refused(tmp_path: Path, command, expected):
    path = toy(tmp_path, payload={"image": "eicweb/eic_xl:1", "command": command})
    code, output = validate(path)
    assert code == 1 and expected in output, output


def test_dataset_names_cannot_lead_out_of_the_work_directory(tmp_path: Path):
    escape = "epic:../../../outside"
    workflow = render_template("user_analysis", {**SMALL["user_analysis"],
                                                 "input_dataset": escape}, LIBRARY)
    db = Database(f"sqlite:///{tmp_path / 'store.sqlite'}")
    db.create_schema()
    with pytest.raises(TemplateError, match="outside"):
        run_local(db, workflow, LocalRunOptions(workdir=tmp_path / "a" / "b" / "run",
                                                toy_inputs=True))
    db.dispose()
    assert not (tmp_path / "outside").exists() and not (tmp_path / "a" / "outside").exists()


# -- 11: clear errors instead of tracebacks -------------------------------------------------------
def test_unusable_files_give_what_why_fix(tmp_path: Path):
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("template: caf\xe9\n".encode("latin-1"))
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{k}: &{k} [{', '.join([f'*{p}'] * 10)}]\n" for p, k in zip("abcdef", "bcdefg",
                                                                        strict=True)))
    for path, expected in ((latin1, "is not UTF-8"), (folder, "is a directory"),
                           (listed, "is not a YAML mapping"), (bomb, "expands to")):
        code, output = validate(path)
        assert code == 1 and expected in output, (path, output)
        with pytest.raises(ConfigurationError, match=expected):
            load_config(path)
        status = CliRunner().invoke(cli, ["status", "--config", str(path)])
        assert status.exit_code != 0 and expected in status.output, status.output


def test_site_files_that_cannot_be_used(tmp_path: Path):
    sites = tmp_path / "sites"
    sites.mkdir()
    for source in DEFAULT_SITE_DIR.glob("*.yaml"):
        (sites / source.name).write_bytes(source.read_bytes())
    first = sorted(sites.glob("*.yaml"))[0]
    for change, expected in (
            (lambda: first.write_bytes(b"\xff\xfe" + first.read_bytes()), "is not UTF-8"),
            (lambda: (sites / "zz_dir.yaml").mkdir(), "is a directory"),
            (lambda: first.write_text(first.read_text().replace(
                "max_walltime_h: ", "max_walltime_h: .inf #", 1)), "max_walltime_h")):
        saved = first.read_bytes()
        change()
        result = CliRunner().invoke(cli, ["sites", "validate", "--sites", str(sites)])
        assert result.exit_code == 1 and expected in result.output, result.output
        assert "Traceback" not in result.output
        first.write_bytes(saved)
        if (sites / "zz_dir.yaml").exists():
            (sites / "zz_dir.yaml").rmdir()


def test_non_finite_numbers_are_refused(tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_text("monitor: {live_poll_s: .inf}\n")
    with pytest.raises(ConfigurationError, match="live_poll_s"):
        load_config(path)
    with pytest.raises(TemplateError, match="bad value"):
        render_template("ml_training_hpo", {"target_loss": "nan"}, LIBRARY)


def test_the_reco_payload_on_a_short_file_exits_64(tmp_path: Path, capsys):
    """A truncated or garbled file of our format is bad input (64); a file of another format
    (the testbed's STFs) is processed as opaque data, not decoded as ours."""
    for content in (stf_file.MAGIC + b"\x01\x02", stf_file.MAGIC + b"\x05\x00\x00\x00[1,2]"):
        short = tmp_path / "short.stf"
        short.write_bytes(content)
        assert reco.main(["--input", str(short), "--output", str(tmp_path / "o.json")]) == 64
        assert f"cannot reconstruct {short}" in capsys.readouterr().err
    foreign = tmp_path / "foreign.stf"
    foreign.write_bytes(b"0123456789")
    assert reco.main(["--input", str(foreign), "--output", str(tmp_path / "f.json")]) == 0
    result = json.loads((tmp_path / "f.json").read_text())
    assert result["format"] == "opaque" and result["size_bytes"] == 10 and result["n_hits"] == 0
