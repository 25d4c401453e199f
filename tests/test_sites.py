"""The site catalogue: the shipped files validate; a bad file names file, field and allowed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from epic_wfms.cli.main import cli
from epic_wfms.config import Config
from epic_wfms.sites import CatalogueError, load_catalogue
from epic_wfms.sites.catalogue import DEFAULT_SITE_DIR, check_against_config


def test_shipped_catalogue_is_the_epic_fabric():
    catalogue = load_catalogue()
    assert 15 <= len(catalogue.sites) <= 25
    assert 90_000 <= catalogue.cores <= 130_000
    bnl, jlab = catalogue.site("E1_BNL"), catalogue.site("E1_JLAB")
    assert {q.batch_system for q in bnl.queues} == {"htcondor"}
    assert {q.batch_system for q in jlab.queues} == {"slurm"}
    assert (bnl.rse("DISK"), bnl.rse("TAPE")) == ("BNL_DISK", "BNL_TAPE")
    assert (jlab.rse("DISK"), jlab.rse("TAPE")) == ("JLAB_DISK", "JLAB_TAPE")
    assert {link.to: link.gbps for link in bnl.links}["E1_JLAB"] == 400
    kinds = {s.kind for s in catalogue}
    assert {"osg", "hpc", "cloud"} <= kinds
    queues = [q for _, q in catalogue.queues()]
    assert any(q.arch == "aarch64" for q in queues)
    assert any(q.gpus_per_node for q in queues)
    assert any(q.memory_per_core_gb >= 16 for q in queues)
    assert {q.batch_system for q in queues} >= {"htcondor", "slurm", "kubernetes"}
    assert {s.country for s in catalogue} >= {"US", "CA", "FR", "DE", "GB"}
    assert any(not s.pledged for s in catalogue)


def test_catalogue_agrees_with_the_streaming_configuration():
    config = Config()
    assert check_against_config(load_catalogue(), config.sites, config.wfms.panda.queues) == []
    streaming = {site.name: [q.name for q in site.queues if "streaming" in q.workflow_classes]
                 for site in load_catalogue() if site.echelon == "E1"}
    assert streaming == {"E1_BNL": ["BNL_EPIC_PROMPT"], "E1_JLAB": ["JLAB_EPIC_PROMPT"]}
    assert check_against_config(load_catalogue(), config.sites, {"E1_BNL": "BNL_OTHER"}) == [
        "E1_BNL: wfms.panda.queues says BNL_OTHER, the catalogue's streaming queue is "
        "BNL_EPIC_PROMPT"]


def _broken(tmp_path: Path, filename: str, edit) -> Path:
    folder = tmp_path / "sites"
    shutil.copytree(DEFAULT_SITE_DIR, folder)
    path = folder / filename
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data))
    return folder


@pytest.mark.parametrize("edit, field, allowed", [
    (lambda d: d["queues"][1].update(arch="ppc64le"), "queues[1].arch", "'x86_64' or 'aarch64'"),
    (lambda d: d["queues"][0].update(batch="condor"), "queues[0].batch",
     "allowed fields here: arch, batch_system"),
    (lambda d: d.update(echelon="E3"), "echelon", "'E1' or 'E2'"),
    (lambda d: d["queues"][0].update(cores=-5), "queues[0].cores", "greater than 0"),
    (lambda d: d["shares"].update(simulation=0.9), "<site>", "sum to <= 1"),
    (lambda d: d["queues"][0].pop("workflow_classes"), "queues[0].workflow_classes",
     "required"),
])
def test_bad_site_file_names_file_field_and_what_is_allowed(tmp_path, edit, field, allowed):
    folder = _broken(tmp_path, "e1_bnl.yaml", edit)
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(folder)
    message = str(caught.value)
    assert str(folder / "e1_bnl.yaml") in message
    assert f"{field}:" in message
    assert allowed in message


def test_opportunistic_queue_may_not_run_critical_work(tmp_path):
    folder = _broken(tmp_path, "e2_osg.yaml",
                     lambda d: d["queues"][0]["workflow_classes"].append("reconstruction"))
    with pytest.raises(CatalogueError, match=r"e2_osg.yaml.*queues\[0\]|opportunistic queues "
                                             r"may run only \['ml', 'simulation'\]"):
        load_catalogue(folder)


def test_link_to_unknown_site_is_refused(tmp_path):
    folder = _broken(tmp_path, "e2_mit.yaml", lambda d: d["links"].append(
        {"to": "E2_NOWHERE", "gbps": 10}))
    with pytest.raises(CatalogueError, match=r"e2_mit.yaml: links\[1\].to: unknown site "
                                             r"'E2_NOWHERE'.*allowed: the other sites"):
        load_catalogue(folder)


def test_cli_lists_shows_and_validates():
    runner = CliRunner()
    listed = runner.invoke(cli, ["sites", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert {row["site"] for row in json.loads(listed.output)} >= {"E1_BNL", "E1_JLAB"}
    shown = runner.invoke(cli, ["sites", "show", "E1_JLAB"])
    assert json.loads(shown.output)["queues"][0]["name"] == "JLAB_EPIC_PROMPT"
    missing = runner.invoke(cli, ["sites", "show", "E9_MOON"])
    assert missing.exit_code != 0 and "unknown site 'E9_MOON'" in missing.output
    valid = runner.invoke(cli, ["sites", "validate"])
    assert valid.exit_code == 0, valid.output


def test_validate_reports_disagreement_with_the_configuration(tmp_path):
    config = tmp_path / "epic.yaml"
    config.write_text(yaml.safe_dump({
        "rses": [{"name": "DAQ_BUFFER", "site": "E0_EIC", "type": "DISK"},
                 {"name": "BNL_SCRATCH", "site": "E1_BNL", "type": "DISK"},
                 {"name": "BNL_TAPE", "site": "E1_BNL", "type": "TAPE"}],
        "sites": [{"name": "E1_BNL", "disk_rse": "BNL_SCRATCH", "tape_rse": "BNL_TAPE"}],
    }))
    result = CliRunner().invoke(cli, ["sites", "validate", "--config", str(config)])
    assert result.exit_code == 1
    assert "E1_BNL: configured DISK RSE BNL_SCRATCH is not in e1_bnl.yaml" in result.output


def test_cli_reports_a_broken_catalogue_without_traceback(tmp_path):
    folder = _broken(tmp_path, "e1_jlab.yaml", lambda d: d["queues"][0].update(arch="sparc"))
    result = CliRunner().invoke(cli, ["sites", "list", "--sites", str(folder)])
    assert result.exit_code == 1
    assert "e1_jlab.yaml: invalid site file" in result.output and "Traceback" not in result.output
