from pathlib import Path

import pytest

from epic_wfms.ddm import DID, EmbeddedDDM, FileSpec, LocalRSE
from epic_wfms.errors import DataManagementError
from epic_wfms.model.checksum import file_adler32
from epic_wfms.store.database import Database


@pytest.fixture
def ddm(tmp_path: Path, database_url: str) -> EmbeddedDDM:
    db = Database(database_url)
    db.create_schema()
    rses = [
        LocalRSE("DAQ_BUFFER", "E0", "DISK", tmp_path / "buffer"),
        LocalRSE("BNL_TAPE", "E1_BNL", "TAPE", tmp_path / "bnl_tape"),
        LocalRSE("JLAB_TAPE", "E1_JLAB", "TAPE", tmp_path / "jlab_tape"),
        LocalRSE("BNL_DISK", "E1_BNL", "DISK", tmp_path / "bnl_disk"),
    ]
    return EmbeddedDDM(db, rses)


def put(ddm: EmbeddedDDM, name: str, content: bytes) -> FileSpec:
    path = ddm.rse("DAQ_BUFFER").root / name
    path.write_bytes(content)
    spec = FileSpec(DID("epic", name), "DAQ_BUFFER", str(path), len(content), file_adler32(path))
    ddm.register_file(spec)
    return spec


def test_dataset_attach_close(ddm):
    dataset = DID("epic", "swf.000001.run")
    ddm.add_dataset(dataset)
    ddm.add_dataset(dataset)  # idempotent
    spec = put(ddm, "swf.000001.000000.stf", b"x" * 100)
    ddm.attach(dataset, [spec.did])
    ddm.attach(dataset, [spec.did])
    assert ddm.list_files(dataset) == [spec.did]
    ddm.close_dataset(dataset)
    late = put(ddm, "swf.000001.000001.stf", b"y")
    with pytest.raises(DataManagementError, match="is closed"):
        ddm.attach(dataset, [late.did])
    with pytest.raises(DataManagementError, match="does not exist"):
        ddm.attach(DID("epic", "nope"), [late.did])


def test_did_is_immutable(ddm):
    spec = put(ddm, "f.stf", b"abc")
    with pytest.raises(DataManagementError, match="different content"):
        ddm.register_file(FileSpec(spec.did, "DAQ_BUFFER", spec.path, 4, "00000001"))


def test_archive_rule_copies_to_both_tapes_and_verifies(ddm):
    spec = put(ddm, "swf.000001.000002.stf", b"detector data" * 50)
    rule = ddm.add_rule(spec.did, "BNL_TAPE|JLAB_TAPE", copies=2, activity="Raw Archival")
    assert rule.state == "OK" and rule.error is None
    replicas = {r.rse: r for r in ddm.list_replicas(spec.did)}
    assert set(replicas) == {"DAQ_BUFFER", "BNL_TAPE", "JLAB_TAPE"}
    for rse in ("BNL_TAPE", "JLAB_TAPE"):
        assert replicas[rse].state == "A"
        assert file_adler32(Path(replicas[rse].path)) == spec.adler32
        assert "/epic/" in replicas[rse].path  # Rucio deterministic path
    assert ddm.add_rule(spec.did, "type=TAPE", copies=2).state == "OK"


def test_corrupted_source_makes_rule_stuck_with_bad_replica(ddm):
    spec = put(ddm, "swf.000001.000003.stf", b"good data")
    Path(spec.path).write_bytes(b"bad  data")  # bit rot on the buffer after registration
    rule = ddm.add_rule(spec.did, "BNL_TAPE", copies=1)
    assert rule.state == "STUCK" and "checksum mismatch" in rule.error
    states = {r.rse: r.state for r in ddm.list_replicas(spec.did)}
    assert states["BNL_TAPE"] == "B"
    with pytest.raises(DataManagementError, match="no available replica"):
        ddm.local_path(spec.did, "BNL_TAPE")


def test_rule_expression_errors(ddm):
    spec = put(ddm, "g.stf", b"1")
    with pytest.raises(DataManagementError, match="matches no RSE"):
        ddm.add_rule(spec.did, "CERN_TAPE")
    with pytest.raises(DataManagementError, match="only 1 RSEs match"):
        ddm.add_rule(spec.did, "BNL_TAPE", copies=2)
    with pytest.raises(DataManagementError, match="unknown RSE"):
        ddm.rse("NOWHERE")
