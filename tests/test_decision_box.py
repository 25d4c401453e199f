from collections import Counter
from datetime import UTC, datetime

import pytest

from epic_wfms.config import DecisionBoxConfig, load_config
from epic_wfms.errors import ConfigurationError
from epic_wfms.model import SuperTimeFrame
from epic_wfms.streaming.decision_box import DecisionBox
from epic_wfms.streaming.gating import gate_action

SITES = ["E1_BNL", "E1_JLAB"]
NOW = datetime(2026, 11, 25, tzinfo=UTC)


def stf(seq: int, **metadata) -> SuperTimeFrame:
    return SuperTimeFrame(
        run_number=1, sequence=seq, filename=f"swf.000001.{seq:06d}.stf", first_tf_time=NOW,
        last_tf_time=NOW, tf_count=1, size_bytes=1, adler32="00000001", state="run",
        substate="physics", daq_metadata=metadata,
    )


def route_many(config: DecisionBoxConfig, n: int = 100, backlog=lambda s: 0) -> Counter:
    box = DecisionBox(config, SITES, backlog)
    return Counter(box.route(stf(i))[0] for i in range(n))


def test_alternate_and_single():
    assert route_many(DecisionBoxConfig(policy="alternate")) == {"E1_BNL": 50, "E1_JLAB": 50}
    single = DecisionBoxConfig(policy="single", single_site="E1_JLAB")
    assert route_many(single) == {"E1_JLAB": 100}


def test_by_fraction_meets_shares_exactly():
    config = DecisionBoxConfig(policy="by_fraction", fractions={"E1_BNL": 0.7, "E1_JLAB": 0.3})
    assert route_many(config) == {"E1_BNL": 70, "E1_JLAB": 30}


def test_both_keeps_a_copy_at_every_site():
    box = DecisionBox(DecisionBoxConfig(policy="both"), SITES, lambda s: 0)
    assert box.route(stf(0)) == ["E1_BNL", "E1_JLAB"]
    assert box.route(stf(1)) == ["E1_JLAB", "E1_BNL"]


def test_by_load_prefers_the_idle_site():
    backlog = {"E1_BNL": 12, "E1_JLAB": 3}
    assert route_many(DecisionBoxConfig(policy="by_load"), 10, backlog.get) == {"E1_JLAB": 10}


def test_by_metadata_rules_with_fallback():
    config = DecisionBoxConfig(policy="by_metadata", metadata_rules=[
        {"field": "flavour", "equals": "calib", "sites": ["E1_JLAB"]}])
    box = DecisionBox(config, SITES, lambda s: 0)
    assert box.route(stf(0, flavour="calib")) == ["E1_JLAB"]
    assert box.route(stf(0, flavour="epic")) == ["E1_BNL"]


def test_gate_lookup_and_missing_state():
    gate = {"run/physics": "process", "run/*": "defer"}
    assert gate_action(gate, "run", "physics") == "process"
    assert gate_action(gate, "run", "standby") == "defer"
    with pytest.raises(ConfigurationError, match="add 'beam/ready' or 'beam/\\*'"):
        gate_action(gate, "beam", "ready")


def test_configuration_errors_say_what_to_fix(tmp_path):
    with pytest.raises(ConfigurationError, match="unknown sites \\['CERN'\\]"):
        load_config(decision_box={"policy": "by_fraction", "fractions": {"CERN": 1.0}})
    with pytest.raises(ConfigurationError, match=r"decision_box\.policy"):
        load_config(decision_box={"policy": "coin_flip"})
    bad = tmp_path / "c.yaml"
    bad.write_text("processing: [unclosed")
    with pytest.raises(ConfigurationError, match="cannot read configuration"):
        load_config(bad)
    good = tmp_path / "ok.yaml"
    good.write_text("processing:\n  merge_every: 7\n")
    assert load_config(good).processing.merge_every == 7


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("EPIC_WFMS_DATA_DIR", str(tmp_path / "x"))
    config = load_config()
    assert config.data_dir == tmp_path / "x"
    assert config.db_url.endswith("x/bookkeeping.sqlite")
