"""The DID naming rule, activity mapping and event parsing of the Rucio backend (no server)."""

import json

import pytest

from epic_wfms.config import load_config
from epic_wfms.ddm import DID
from epic_wfms.ddm.rucio import policy
from epic_wfms.ddm.rucio.events import parse_event
from epic_wfms.errors import ConfigurationError, DataManagementError
from epic_wfms.model import naming


def test_testbed_names_map_to_ours():
    assert policy.from_testbed(naming.testbed_run_dataset(7)) == DID("epic", "swf.000007.run")
    assert policy.from_testbed(naming.testbed_site_dataset(7, "E1_BNL"), "prod") == DID(
        "prod", "swf.000007.E1_BNL")
    with pytest.raises(ValueError, match="not a testbed run dataset"):
        policy.from_testbed("group.daq:something.else")
    assert policy.run_of_dataset(naming.run_dataset(12)) == 12
    assert policy.run_of_dataset(naming.site_dataset(12, "E1_JLAB")) == 12
    assert policy.run_of_dataset("swf.run.20260101T000000.stream") is None
    assert policy.period_container("epic", "2026") == DID("epic", "swf.2026.period")


def test_activities_and_metadata():
    assert policy.rucio_activity("Raw Archival") == "T0 Tape"
    assert policy.rucio_activity("Express") == "Express"
    meta = policy.file_metadata({"run_number": 3, "sequence": 1, "substate": None})
    assert meta == {"datatype": "STF", "run_number": 3, "sequence": 1}
    assert policy.file_metadata({"kind": "reco"})["datatype"] == "RECO"


def test_hermes_message_parsing():
    body = json.dumps({"event_type": "RULE_OK", "created_at": "2026-11-25 14:30:03",
                       "payload": {"scope": "epic", "name": "f.stf", "rule_id": "ab12"}})
    event = parse_event(body)
    assert (event.event_type, event.rule_id, event.did) == ("rule_ok", "ab12",
                                                             DID("epic", "f.stf"))
    assert parse_event(json.dumps({"event_type": "transfer-queued",
                                   "payload": {"rule-id": "cd34"}})).rule_id == "cd34"
    with pytest.raises(DataManagementError, match="not a Rucio event message"):
        parse_event("{not json")


def test_ddm_configuration_is_validated():
    config = load_config(ddm={"backend": "rucio", "rucio": {"scope": "epic", "events": True}})
    assert config.ddm.backend == "rucio" and config.ddm.locality["reco"] == "replicate"
    with pytest.raises(ConfigurationError, match="backend"):
        load_config(ddm={"backend": "dcache"})
    with pytest.raises(ConfigurationError, match="locality"):
        load_config(ddm={"locality": {"reco": "teleport"}})
