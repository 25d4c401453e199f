"""The fabric simulation, driven by the real brokerage: shares, outages, no STF lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from epic_wfms.cli.main import cli
from epic_wfms.config import load_config
from epic_wfms.errors import ConfigurationError
from epic_wfms.installation import open_database
from epic_wfms.simulation import FabricSimulation, SimSettings, parse_outage
from epic_wfms.sites import load_catalogue
from epic_wfms.store import accounting

SHARES = {
    "E2_ALPHA": {"simulation": 0.6, "reconstruction": 0.3, "analysis": 0.1},
    "E2_BETA": {"simulation": 0.2, "reconstruction": 0.2, "analysis": 0.6},
    "E2_GAMMA": {"simulation": 0.34, "reconstruction": 0.33, "analysis": 0.33},
}


def small_catalogue(folder: Path):
    """Three pledged E2 sites, one queue each running three classes, different shares."""
    folder.mkdir()
    names = list(SHARES)
    for i, (name, shares) in enumerate(SHARES.items()):
        site = {
            "name": name, "echelon": "E2", "institution": name, "country": "US",
            "kind": "grid", "pledged": True,
            "storage": [{"rse": f"{name[3:]}_DISK", "type": "DISK", "capacity_tb": 100}],
            "links": [{"to": names[(i + 1) % 3], "gbps": 100}],
            "shares": shares,
            "queues": [{"name": f"{name[3:]}_Q", "batch_system": "slurm", "cores": 1024 * (i + 1),
                        "cores_per_node": 32, "memory_per_core_gb": 4, "max_walltime_h": 24,
                        "max_queued": 400,
                        "workflow_classes": ["simulation", "reconstruction", "analysis"]}],
        }
        (folder / f"{name.lower()}.yaml").write_text(yaml.safe_dump(site))
    return load_catalogue(folder)


def test_shares_converge_to_their_targets_over_a_simulated_day(tmp_path):
    catalogue = small_catalogue(tmp_path / "sites")
    # every class has more work than its shares can take (3x the day's capacity)
    settings = SimSettings(hours=24, campaign_fraction=3.0, stf_rate_hz=0, drain=False,
                           classes=("simulation", "reconstruction", "analysis"))
    report = FabricSimulation(catalogue, settings).run()
    for name, targets in SHARES.items():
        site = report["sites"][name]
        assert site["utilisation"] > 0.9, name  # oversubscribed: shares decide, not demand
        for wf, target in targets.items():
            assert site["share_actual"][wf] == pytest.approx(target, abs=0.03), (name, wf)
    assert report["share_deviation_mean"] < 0.02


def test_e1_outage_shifts_streaming_to_the_other_e1_with_no_stf_lost():
    settings = SimSettings(hours=3, campaign_fraction=0.05, seed=5,
                           outages=[parse_outage("E1_BNL@1h-2h")])
    report = FabricSimulation(load_catalogue(), settings).run()
    stream = report["streaming"]
    assert stream["stfs_produced"] > 15_000
    assert stream["stfs_processed"] == stream["stfs_produced"] and stream["lost"] == 0
    window = report["outages"][0]
    start, end = window["stfs_by_site_at_start"], window["stfs_by_site_at_end"]
    during_bnl = end.get("E1_BNL", 0) - start.get("E1_BNL", 0)
    during_jlab = end["E1_JLAB"] - start["E1_JLAB"]
    assert during_bnl == 0 and during_jlab > 5000  # the whole stream went to JLab
    assert abs(start["E1_BNL"] - start["E1_JLAB"]) < 0.05 * start["E1_BNL"]  # 50/50 before
    assert window["jobs_moved"] > 0  # what ran at BNL was re-brokered, not lost
    assert report["campaign"]["done"] == report["campaign"]["jobs"]


def test_link_outage_keeps_streaming_at_the_source_e1():
    settings = SimSettings(hours=1, campaign_fraction=0.0,
                           outages=[parse_outage("E1_BNL~E1_JLAB@20m-40m")])
    report = FabricSimulation(load_catalogue(), settings).run()
    window = report["outages"][0]
    start, end = window["stfs_by_site_at_start"], window["stfs_by_site_at_end"]
    during_jlab = end["E1_JLAB"] - start["E1_JLAB"]
    during_bnl = end["E1_BNL"] - start["E1_BNL"]
    # JLab only finishes what it already held (~240 s of its half of the stream)
    assert during_jlab < 300 and during_bnl > 1700
    assert report["streaming"]["lost"] == 0


@pytest.mark.parametrize("text", ["E1_BNL", "E1_BNL@4h-2h", "E1_BNL@x-y"])
def test_bad_outage_is_explained(text):
    with pytest.raises(ConfigurationError, match="outage"):
        parse_outage(text)


def test_outage_of_unknown_site_is_refused():
    with pytest.raises(ConfigurationError, match="unknown sites"):
        FabricSimulation(load_catalogue(), SimSettings(outages=[parse_outage("E2_MARS@1h-2h")]))


def test_cli_sim_fabric_reports_json():
    result = CliRunner().invoke(cli, ["sim", "fabric", "--hours", "0.5", "--campaign", "0.02",
                                      "--outage", "E1_JLAB@10m-20m", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["streaming"]["lost"] == 0 and report["brokerage"]["decisions"] > 1000
    assert set(report["sites"]) >= {"E1_BNL", "E1_JLAB"}
    bad = CliRunner().invoke(cli, ["sim", "fabric", "--outage", "BNL"])
    assert bad.exit_code != 0 and "SITE@T0-T1" in bad.output


def test_cli_sim_records_decisions_and_usage_for_the_monitor(tmp_path, monkeypatch):
    monkeypatch.setenv("EPIC_WFMS_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["sim", "fabric", "--hours", "0.25", "--campaign", "0.01",
                                      "--record", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    db = open_database(load_config())
    assert report["recorded"]["decisions"] == report["brokerage"]["decisions"]
    by_site = accounting.usage_summary(db, ("site",))
    assert {r["site"] for r in by_site} >= {"E1_BNL", "E1_JLAB"}
    assert sum(r["jobs"] for r in by_site) == report["recorded"]["usage"]
    stf = accounting.why(db, "stf-0000000")[0]
    assert stf["site"] == "E1_BNL" and stf["reasons"]["policy"] == "butterfly"
    db.dispose()
