"""The decision box: policies as butterfly targets or rules over the site catalogue's E1s,
fail-over when an E1 is offline (operator) or unhealthy (its jobs' failures)."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from epic_wfms.config import DecisionBoxConfig, SiteHealthConfig, load_config
from epic_wfms.errors import ConfigurationError
from epic_wfms.lifecycle.job import JobKind, JobStatus
from epic_wfms.model import SuperTimeFrame
from epic_wfms.sites import load_catalogue
from epic_wfms.store.controls import set_site_online
from epic_wfms.store.database import Database
from epic_wfms.store.schema import JobRecord, utcnow
from epic_wfms.streaming.decision_box import DecisionBox
from epic_wfms.streaming.gating import gate_action
from epic_wfms.streaming.site_view import SiteView

SITES = ["E1_BNL", "E1_JLAB"]
NOW = datetime(2026, 11, 25, tzinfo=UTC)


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


@pytest.fixture
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'bookkeeping.sqlite'}")
    database.create_schema()
    yield database
    database.dispose()


@pytest.fixture
def make_box(db, catalogue):
    def make(config: DecisionBoxConfig, backlog=None) -> DecisionBox:
        view = SiteView(db, catalogue, None)
        return DecisionBox(config, SITES, view, backlog)
    return make


def stf(seq: int, **metadata) -> SuperTimeFrame:
    return SuperTimeFrame(
        run_number=1, sequence=seq, filename=f"swf.000001.{seq:06d}.stf", first_tf_time=NOW,
        last_tf_time=NOW, tf_count=1, size_bytes=1, adler32="00000001", state="run",
        substate="physics", daq_metadata=metadata,
    )


def route_many(box: DecisionBox, n: int = 100, start: int = 0) -> Counter:
    return Counter(box.route(stf(i))[0] for i in range(start, start + n))


def test_alternate_and_single(make_box):
    assert route_many(make_box(DecisionBoxConfig(policy="alternate"))) == {
        "E1_BNL": 50, "E1_JLAB": 50}
    single = DecisionBoxConfig(policy="single", single_site="E1_JLAB")
    assert route_many(make_box(single)) == {"E1_JLAB": 100}


def test_by_fraction_meets_shares(make_box):
    config = DecisionBoxConfig(policy="by_fraction", fractions={"E1_BNL": 0.7, "E1_JLAB": 0.3})
    assert route_many(make_box(config)) == {"E1_BNL": 70, "E1_JLAB": 30}


def test_both_keeps_a_copy_at_every_site(make_box):
    box = make_box(DecisionBoxConfig(policy="both"))
    assert box.route(stf(0)) == ["E1_BNL", "E1_JLAB"]
    assert box.route(stf(1)) == ["E1_JLAB", "E1_BNL"]


def test_by_load_prefers_the_idle_site(make_box):
    backlog = {"E1_BNL": 12, "E1_JLAB": 3}
    box = make_box(DecisionBoxConfig(policy="by_load"), lambda: dict(backlog))
    assert route_many(box, 9) == {"E1_JLAB": 9}  # the batch's own STFs count as load
    assert Counter(r.sites[0] for r in box.route_batch([stf(i) for i in range(12)])) == {
        "E1_JLAB": 10, "E1_BNL": 2}


def test_by_metadata_rules_with_fallback(make_box, db):
    config = DecisionBoxConfig(policy="by_metadata", metadata_rules=[
        {"field": "flavour", "equals": "calib", "sites": ["E1_JLAB"]}])
    box = make_box(config)
    assert box.route(stf(0, flavour="calib")) == ["E1_JLAB"]
    assert box.route(stf(1, flavour="epic")) == ["E1_BNL"]
    set_site_online(db, "E1_JLAB", False, "cooling failure", "shifter")
    (route,) = box.route_batch([stf(2, flavour="calib")])  # the rule's site is down: fail-over
    assert route.sites == ["E1_BNL"] and route.decision["reasons"]["rule"]["sites"] == [
        "E1_JLAB"]


def test_offline_site_gets_nothing_until_it_is_back(make_box, db):
    box = make_box(DecisionBoxConfig(policy="alternate"))
    assert route_many(box, 4) == {"E1_BNL": 2, "E1_JLAB": 2}
    set_site_online(db, "E1_BNL", False, "disk array swap", "shifter")
    routes = box.route_batch([stf(i) for i in range(4, 10)])
    assert {r.sites[0] for r in routes} == {"E1_JLAB"}
    row = routes[0].decision
    assert (row["job_ref"], row["site"], row["queue"], row["outcome"]) == (
        "swf.000001.000004.stf", "E1_JLAB", "JLAB_EPIC_PROMPT", "assigned")
    assert row["reasons"]["degraded"] == {"E1_BNL": "offline: disk array swap"}
    assert "fail-over" in row["reasons"]["summary"]
    set_site_online(db, "E1_BNL", True, "swapped", "shifter")
    assert route_many(box, 4, start=10) == {"E1_BNL": 2, "E1_JLAB": 2}  # its share again


def test_single_site_fails_over_and_nowhere_usable_holds(make_box, db):
    box = make_box(DecisionBoxConfig(policy="single", single_site="E1_BNL"))
    set_site_online(db, "E1_BNL", False, "down", "shifter")
    assert route_many(box, 3) == {"E1_JLAB": 3}
    set_site_online(db, "E1_JLAB", False, "down too", "shifter")
    (held,) = box.route_batch([stf(3)])
    assert held.deferred and held.sites == ["E1_BNL"]
    assert held.decision["outcome"] == "deferred"
    assert "held at E1_BNL until an E1 is usable" in held.decision["reasons"]["summary"]


def test_failing_site_is_avoided_then_probed(db, catalogue):
    view = SiteView(db, catalogue, None)
    box = DecisionBox(DecisionBoxConfig(), SITES, view)
    box.view.state.health.policy.backoff_s = 60
    ended = utcnow() - timedelta(seconds=30)
    with db.session() as session:
        session.add_all(JobRecord(
            kind=JobKind.RECO, site="E1_BNL", status=JobStatus.FAILED, attempt_nr=1,
            max_attempts=3, command="reco", ended_at=ended) for _ in range(5))
    routes = box.route_batch([stf(i) for i in range(4)])
    assert {r.sites[0] for r in routes} == {"E1_JLAB"}
    assert routes[0].decision["reasons"]["degraded"] == {
        "E1_BNL": "avoided: 5/5 jobs failed in 300 s"}
    later = ended.timestamp() + 61  # the backoff is over: probing, it gets STFs again
    assert box.usable_sites(box.view.refresh(later)) == {"E1_BNL", "E1_JLAB"}


def test_health_is_configured(tmp_path):
    config = load_config(decision_box={"health": {"min_failures": 2, "backoff_s": 5}})
    assert config.decision_box.health == SiteHealthConfig(min_failures=2, backoff_s=5)
    with pytest.raises(ConfigurationError, match="fractions must be >= 0"):
        load_config(decision_box={"policy": "by_fraction", "fractions": {"E1_BNL": -1}})


def test_streaming_sites_must_be_catalogued_e1s(db, catalogue):
    with pytest.raises(ConfigurationError, match="E2_MIT cannot take streaming"):
        DecisionBox(DecisionBoxConfig(), ["E1_BNL", "E2_MIT"], SiteView(db, catalogue))


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
