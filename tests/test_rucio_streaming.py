"""The streaming spine with Rucio as its DDM: a real server, real rules, real datasets."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.bus.stomp import StompSettings
from epic_wfms.ddm import DID
from epic_wfms.ddm.reconcile import reconcile_run
from epic_wfms.ddm.rucio.backend import RucioDDM
from epic_wfms.ddm.rucio.events import RucioEventListener
from epic_wfms.ddm.rucio.transfers import SiteTransferService
from epic_wfms.model import naming
from epic_wfms.model.checksum import file_adler32
from epic_wfms.store.integrity import open_issues
from epic_wfms.store.stfs import stf_by_filename
from epic_wfms.streaming.report import run_report
from tests.conftest import StreamingRig, make_config
from tests.test_streaming import TIMEOUT, stfs

RUN, N = 301, 6


@pytest.fixture
def rucio_installation(tmp_path: Path, rucio_server, daq_settings):
    scope = rucio_server.new_scope()
    config = make_config(tmp_path, missing_grace_s=60.0)
    config = config.model_copy(update={"ddm": config.ddm.model_copy(update={
        "backend": "rucio", "rucio": rucio_server.settings(scope, transfers="local_copy")})})
    inst = StreamingRig(config, daq_settings)
    yield inst
    inst.close()


def test_streaming_run_with_rucio_registers_archives_processes_and_closes(rucio_installation):
    inst = rucio_installation
    ddm = inst.ddm
    inst.daq.bring_up()
    inst.daq.physics_run(RUN, N)
    assert inst.orchestrator.wait_run_finished(RUN, TIMEOUT * 2), stfs(inst, RUN)
    produced = [naming.stf_filename(RUN, s) for s in range(N)]
    report = run_report(inst.db, ddm, RUN, produced)
    for key in ("stfs_registered", "stfs_archived", "stfs_processed", "stfs_merged"):
        assert report[key] == N, (key, report, stfs(inst, RUN))
    assert report["lost"] == 0

    run_ds = DID("epic", naming.run_dataset(RUN))
    assert [d.name for d in ddm.list_files(run_ds)] == produced
    for name in produced:  # right checksum, two archive copies, one per E1 tape
        meta = ddm.client.get_metadata(ddm.scope, name, plugin="ALL")
        assert meta["adler32"] == stfs(inst, RUN)[int(name[11:17])].adler32
        assert (meta["run_number"], meta["datatype"], meta["state"]) == (RUN, "STF", "run")
        assert meta["substate"] == "physics" and meta["tf_count"] > 0
        tapes = [r for r in ddm.list_replicas(DID("epic", name)) if r.rse.endswith("_TAPE")]
        assert sorted((r.rse, r.state) for r in tapes) == [("BNL_TAPE", "A"), ("JLAB_TAPE", "A")]
        assert all(file_adler32(Path(r.path)) == meta["adler32"] for r in tapes)
    for site in ("E1_BNL", "E1_JLAB"):
        assert not ddm.is_open(DID("epic", naming.site_dataset(RUN, site)))
    assert not ddm.is_open(run_ds)
    period = ddm.client.list_content(ddm.scope, f"swf.{ddm.settings.period}.period")
    assert {naming.run_dataset(RUN)} <= {row["name"] for row in period}
    rules = {r["activity"] for r in ddm.client.list_did_rules(ddm.scope, produced[0])}
    assert {"T0 Tape", "Express"} <= rules

    # a redelivered announcement after the run registers nothing twice and raises nothing
    record = stfs(inst, RUN)[0]
    body = m.StfAvailable(stf=_stf_of(record), rse="DAQ_BUFFER",
                          path=str(inst.daq.buffer_dir / record.filename))
    inst.bus.publish(
        dest.STF_INGEST, inst.ctx.factory.make("stf_available", body, run_number=RUN))
    time.sleep(1.0)  # let ingest handle the redelivery
    after = run_report(inst.db, ddm, RUN, produced)
    assert after["dead_letters"] == 0 and after["integrity_issues"] == {}
    assert after["stfs_registered"] == N
    assert [d.name for d in ddm.list_files(run_ds)] == produced
    assert len([r for r in ddm.list_replicas(DID("epic", produced[0]))
                if r.rse.endswith("_TAPE")]) == 2

    # reconciliation: the store and Rucio agree; then each side is made to differ
    assert reconcile_run(inst.db, ddm, inst.config, RUN) == 0
    ddm.client.update_replicas_states("JLAB_TAPE", [
        {"scope": ddm.scope, "name": produced[1], "state": "U"}])  # a tape copy lost in Rucio
    with inst.db.session() as session:
        stf_by_filename(session, produced[2]).adler32 = "00000001"  # store disagrees
    assert reconcile_run(inst.db, ddm, inst.config, RUN) == 2
    assert reconcile_run(inst.db, ddm, inst.config, RUN) == 2  # reported once, not twice
    details = {(i.filename, i.detail) for i in open_issues(inst.db, RUN)
               if i.kind == "ddm_mismatch"}
    assert details == {
        (produced[1], "archived in the store but no available replica on JLAB_TAPE in DDM"),
        (produced[2], f"checksum differs: store ad:00000001, DDM ad:{record_adler(inst, 2)}"),
    }


def record_adler(inst, sequence):
    return file_adler32(inst.daq.buffer_dir / naming.stf_filename(RUN, sequence))


def _stf_of(record):
    from epic_wfms.model.stf import SuperTimeFrame

    return SuperTimeFrame(
        run_number=record.run_number, sequence=record.sequence, filename=record.filename,
        first_tf_time=record.first_tf_time, last_tf_time=record.last_tf_time,
        tf_count=record.tf_count, size_bytes=record.size_bytes, adler32=record.adler32,
        state=record.state, substate=record.substate, daq_metadata=record.daq_metadata,
    )


def test_rules_complete_asynchronously_and_rucio_events_start_the_work(
    tmp_path: Path, rucio_server, daq_settings
):
    """transfers: rucio - a site transfer service (the FTS stand-in) completes rules as Rucio
    queues them; archiving and processing continue on Rucio's RULE_OK events."""
    scope = rucio_server.new_scope()
    settings = rucio_server.settings(scope, transfers="rucio", events=True)
    site = SiteTransferService(RucioDDM(settings, rucio_server.rses)).start()
    feed = RucioEventListener(StompSettings(client_id="test-site-transfers"),
                              settings.events_destination)
    feed.add_handler(site.on_event)
    feed.start()
    config = make_config(tmp_path, missing_grace_s=60.0)
    config = config.model_copy(update={"ddm": config.ddm.model_copy(update={
        "backend": "rucio", "rucio": settings})})
    inst = StreamingRig(config, daq_settings)
    try:
        inst.daq.bring_up()
        inst.daq.physics_run(RUN + 1, 4)
        assert inst.orchestrator.wait_run_finished(RUN + 1, TIMEOUT * 2), stfs(inst, RUN + 1)
        report = run_report(inst.db, inst.ddm, RUN + 1,
                            [naming.stf_filename(RUN + 1, s) for s in range(4)])
        assert report["stfs_archived"] == report["stfs_processed"] == 4, report
        assert report["lost"] == 0
        watcher = inst.ddm.watcher
        assert watcher.fired_by_event >= 1  # Rucio's RULE_OK reached us through hermes
        assert watcher.fired_by_event + watcher.fired_by_poll >= 8  # archive + stage-in
        assert site.completed >= 12  # two tape copies and one disk copy per STF, verified
    finally:
        inst.close()
        feed.stop()
        site.stop()
