"""DDM contract: the same tests against the embedded DDM (SQLite, PostgreSQL) and a real Rucio."""

from pathlib import Path

import pytest

from epic_wfms.ddm import DID, EmbeddedDDM, FileSpec, LocalRSE
from epic_wfms.ddm.carousel import DataCarousel
from epic_wfms.ddm.rucio.backend import RucioDDM
from epic_wfms.errors import DataManagementError
from epic_wfms.model.checksum import file_adler32
from epic_wfms.store.database import Database
from tests.conftest import private_postgres_schema


def embedded(tmp_path: Path, url: str) -> EmbeddedDDM:
    db = Database(url)
    db.create_schema()
    rses = [
        LocalRSE("DAQ_BUFFER", "E0", "DISK", tmp_path / "buffer"),
        LocalRSE("BNL_TAPE", "E1_BNL", "TAPE", tmp_path / "bnl_tape"),
        LocalRSE("JLAB_TAPE", "E1_JLAB", "TAPE", tmp_path / "jlab_tape"),
        LocalRSE("BNL_DISK", "E1_BNL", "DISK", tmp_path / "bnl_disk"),
    ]
    return EmbeddedDDM(db, rses)


@pytest.fixture(params=["embedded-sqlite", "embedded-postgresql", "rucio"])
def ddm(request, tmp_path: Path):
    if request.param == "embedded-sqlite":
        yield embedded(tmp_path, f"sqlite:///{tmp_path / 'bookkeeping.sqlite'}")
    elif request.param == "embedded-postgresql":
        with private_postgres_schema() as url:
            yield embedded(tmp_path, url)
    else:
        server = request.getfixturevalue("rucio_server")
        scope = server.new_scope()
        yield RucioDDM(server.settings(scope, transfers="local_copy"), server.rses)


def put(ddm, tmp_path: Path, name: str, content: bytes) -> FileSpec:
    """A file the DAQ wrote to its buffer, registered there."""
    root = ddm.rse("DAQ_BUFFER").root if isinstance(ddm, EmbeddedDDM) else tmp_path / "daq"
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_bytes(content)
    spec = FileSpec(DID("epic", name), "DAQ_BUFFER", str(path), len(content), file_adler32(path),
                    {"run_number": 1, "sequence": 0, "state": "run"})
    ddm.register_file(spec)
    return spec


def test_dataset_attach_close(ddm, tmp_path):
    dataset = DID("epic", "swf.000001.run")
    ddm.add_dataset(dataset, {"run_number": 1})
    ddm.add_dataset(dataset)  # idempotent
    spec = put(ddm, tmp_path, "swf.000001.000000.stf", b"x" * 100)
    ddm.register_file(spec)  # a redelivered registration changes nothing
    ddm.attach(dataset, [spec.did])
    ddm.attach(dataset, [spec.did])
    assert [f.name for f in ddm.list_files(dataset)] == [spec.did.name]
    assert [r.rse for r in ddm.list_replicas(spec.did)] == ["DAQ_BUFFER"]
    ddm.close_dataset(dataset)
    ddm.close_dataset(dataset)  # idempotent
    late = put(ddm, tmp_path, "swf.000001.000001.stf", b"y")
    with pytest.raises(DataManagementError, match="is closed"):
        ddm.attach(dataset, [late.did])
    with pytest.raises(DataManagementError, match="does not exist"):
        ddm.attach(DID("epic", "nope"), [late.did])


def test_did_is_immutable(ddm, tmp_path):
    spec = put(ddm, tmp_path, "f.stf", b"abc")
    with pytest.raises(DataManagementError, match="different content"):
        ddm.register_file(FileSpec(spec.did, "DAQ_BUFFER", spec.path, 4, "00000001"))


def test_archive_rule_copies_to_both_tapes_and_verifies(ddm, tmp_path):
    spec = put(ddm, tmp_path, "swf.000001.000002.stf", b"detector data" * 50)
    rule = ddm.add_rule(spec.did, "BNL_TAPE|JLAB_TAPE", copies=2, activity="Raw Archival")
    assert rule.state == "OK" and rule.error is None
    replicas = {r.rse: r for r in ddm.list_replicas(spec.did)}
    assert set(replicas) == {"DAQ_BUFFER", "BNL_TAPE", "JLAB_TAPE"}
    for rse in ("BNL_TAPE", "JLAB_TAPE"):
        assert replicas[rse].state == "A"
        assert file_adler32(Path(replicas[rse].path)) == spec.adler32
        assert f"/{replicas[rse].did.scope}/" in replicas[rse].path  # deterministic path
    assert ddm.add_rule(spec.did, "type=TAPE", copies=2).state == "OK"
    again = ddm.add_rule(spec.did, "BNL_TAPE|JLAB_TAPE", copies=2, activity="Raw Archival")
    assert again.state == "OK"
    assert len(ddm.list_replicas(spec.did)) == 3  # a repeated rule copies nothing again


def test_corrupted_source_makes_rule_stuck_with_bad_replica(ddm, tmp_path):
    spec = put(ddm, tmp_path, "swf.000001.000003.stf", b"good data")
    Path(spec.path).write_bytes(b"bad  data")  # bit rot on the buffer after registration
    rule = ddm.add_rule(spec.did, "BNL_TAPE", copies=1)
    assert rule.state == "STUCK" and "checksum mismatch" in rule.error
    states = {r.rse: r.state for r in ddm.list_replicas(spec.did)}
    assert states.get("BNL_TAPE", "absent") != "A"
    with pytest.raises(DataManagementError, match="no available replica"):
        ddm.local_path(spec.did, "BNL_TAPE")


def test_rule_expression_errors(ddm, tmp_path):
    spec = put(ddm, tmp_path, "g.stf", b"1")
    with pytest.raises(DataManagementError, match="matches no RSE"):
        ddm.add_rule(spec.did, "CERN_TAPE")
    with pytest.raises(DataManagementError, match="asks 2 copies"):
        ddm.add_rule(spec.did, "BNL_TAPE", copies=2)
    with pytest.raises(DataManagementError, match="unknown RSE"):
        ddm.rse("NOWHERE")


def test_pfn_is_where_a_rule_puts_the_file(ddm, tmp_path):
    spec = put(ddm, tmp_path, "swf.000001.000004.stf", b"z" * 10)
    ddm.add_rule(spec.did, "BNL_DISK", activity="Express")
    assert ddm.local_path(spec.did, "BNL_DISK") == ddm.pfn(spec.did, "BNL_DISK")


def test_carousel_stages_tape_inputs_in_bounded_batches(ddm, tmp_path):
    inputs = []
    for index in range(7):  # files archived long ago: their only replica is on tape
        did = DID("epic", f"swf.000009.{index:06d}.stf")
        path = Path(ddm.pfn(did, "BNL_TAPE"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"raw data {index}".encode() * 20)
        ddm.register_file(FileSpec(did, "BNL_TAPE", str(path), path.stat().st_size,
                                   file_adler32(path)))
        inputs.append(did)
    carousel = DataCarousel(ddm, inputs, "BNL_DISK", batch_size=3).start()
    assert len(carousel.stats.requested) == 3  # one batch, nothing more before consumption
    consumed = []
    while (item := carousel.next_ready(timeout=30)) is not None:
        did, path = item
        assert file_adler32(Path(path)) == file_adler32(Path(ddm.pfn(did, "BNL_TAPE")))
        consumed.append(did.name)
        carousel.consumed(did)
    assert consumed == [d.name for d in inputs]
    assert carousel.stats.max_in_flight == 3 and not carousel.stats.failed
    with pytest.raises(DataManagementError, match="not positive"):
        DataCarousel(ddm, inputs, "BNL_DISK", batch_size=0)


def test_rucio_registers_and_attaches_in_one_call_idempotently(rucio_server, tmp_path):
    ddm = RucioDDM(rucio_server.settings(rucio_server.new_scope()), rucio_server.rses)
    datasets = [DID("epic", "swf.000002.run"), DID("epic", "swf.000002.E1_BNL")]
    for dataset in datasets:
        ddm.add_dataset(dataset)
    path = tmp_path / "swf.000002.000000.stf"
    path.write_bytes(b"q" * 64)
    spec = FileSpec(DID("epic", path.name), "DAQ_BUFFER", str(path), 64, file_adler32(path))
    ddm.register_and_attach([spec], {d: [spec.did] for d in datasets})
    # a redelivered STF: nothing twice, no error
    ddm.register_and_attach([spec], {d: [spec.did] for d in datasets})
    for dataset in datasets:
        assert [d.name for d in ddm.list_files(dataset)] == [path.name]
    assert [(r.rse, r.state) for r in ddm.list_replicas(spec.did)] == [("DAQ_BUFFER", "A")]
    with pytest.raises(DataManagementError, match="different content"):
        ddm.register_and_attach([FileSpec(spec.did, "DAQ_BUFFER", spec.path, 65, "00000001")],
                                {d: [spec.did] for d in datasets})
