"""End-to-end behaviour of the streaming spine on the embedded backends."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

from sqlalchemy import select

from epic_wfms.bus import destinations as dest
from epic_wfms.ddm import DID
from epic_wfms.model import naming
from epic_wfms.model.checksum import file_adler32
from epic_wfms.model.stf_file import write_stf
from epic_wfms.store.database import Database
from epic_wfms.store.integrity import open_issues
from epic_wfms.store.runs import ensure_run, get_run
from epic_wfms.store.schema import (
    DeadLetterRecord,
    GateEventRecord,
    IntegrityIssueRecord,
    JobRecord,
    ProvenanceRecord,
    StfRecord,
    TfSampleRecord,
)
from epic_wfms.streaming.report import run_report
from tests.conftest import make_config, wait_for

TIMEOUT = 60


def stfs(inst, run):
    with inst.db.session() as session:
        rows = session.scalars(select(StfRecord).where(StfRecord.run_number.is_(run) if run is None
                                                       else StfRecord.run_number == run))
        return {row.sequence: row for row in rows}


def jobs_for(inst, filename):
    with inst.db.session() as session:
        return list(session.scalars(
            select(JobRecord).where(JobRecord.stf_filename == filename).order_by(JobRecord.id)
        ))


def issues(inst, kind):
    with inst.db.session() as session:
        return list(session.scalars(
            select(IntegrityIssueRecord).where(IntegrityIssueRecord.kind == kind)
        ))


def gate_events(inst):
    with inst.db.session() as session:
        return [(g.action, g.reason, g.backlog) for g in session.scalars(
            select(GateEventRecord).order_by(GateEventRecord.id))]


def open_run(inst, run):
    """Bring the complex up and start ``run`` (physics), as the control room does."""
    inst.daq.bring_up()
    inst.daq.run_imminent(run)
    inst.daq.start_run(run)


def finished_run(inst, run, n, **kw):
    inst.daq.bring_up()
    inst.daq.physics_run(run, n, **kw)
    assert inst.orchestrator.wait_run_finished(run, TIMEOUT), stfs(inst, run)
    return run_report(inst.db, inst.ddm, run, [naming.stf_filename(run, s)
                                                          for s in range(n)])


def test_full_run_end_to_end_with_complete_provenance(installation):
    inst = installation
    inst.daq.bring_up()
    inst.daq.stream_outside_run(2)
    inst.daq.physics_run(201, 10)
    assert inst.orchestrator.wait_run_finished(201, TIMEOUT)
    produced = [naming.stf_filename(201, s) for s in range(10)]
    report = run_report(inst.db, inst.ddm, 201, produced)
    for key in ("stfs_registered", "stfs_archived", "stfs_processed", "stfs_merged"):
        assert report[key] == 10, key
    assert report["lost"] == 0 and report["latency_s"]["n"] == 10
    assert report["merged_output"] == "swf.000201.run.merged.json"

    # provenance: STF -> reco output -> partial merge -> run merged output, each by a job
    with inst.db.session() as session:
        edges = {(p.input_name, p.output_name) for p in session.scalars(select(ProvenanceRecord))}
    for name in produced:
        reco = naming.reco_output_filename(name)
        assert (name, reco) in edges
        (merge,) = [out for inp, out in edges if inp == reco]
        assert (merge, "swf.000201.run.merged.json") in edges

    # butterfly: alternate policy splits the run between the two E1 subsets
    ddm = inst.ddm
    bnl = ddm.list_files(DID("epic", naming.site_dataset(201, "E1_BNL")))
    jlab = ddm.list_files(DID("epic", naming.site_dataset(201, "E1_JLAB")))
    assert len(bnl) == len(jlab) == 5
    assert len(ddm.list_files(DID("epic", naming.run_dataset(201)))) == 10
    tapes = {r.rse for r in ddm.list_replicas(DID("epic", produced[0])) if r.state == "A"}
    assert {"BNL_TAPE", "JLAB_TAPE"} <= tapes

    # always-on: outside-run STFs archived, never processed; TF samples booked
    with inst.db.session() as session:
        outside = list(session.scalars(select(StfRecord).where(StfRecord.run_number.is_(None))))
        samples = session.scalars(select(TfSampleRecord)).all()
    assert len(outside) == 2
    assert wait_for(lambda: all(s.archive_status == "archived" for s in stfs(inst, None).values()))
    assert {s.processing_status for s in outside} == {"not_required"}
    assert len(samples) == 12
    assert [(i.kind, i.detail) for i in open_issues(inst.db)] == []


def test_archiving_completes_while_processing_is_stalled(installation):
    inst = installation
    for site in ("E1_BNL", "E1_JLAB"):
        inst.executor.set_online(site, False)  # processing stalls at both E1s
    inst.daq.bring_up()
    inst.daq.physics_run(202, 6)
    assert wait_for(lambda: all(s.archive_status == "archived" for s in stfs(inst, 202).values())
                    and len(stfs(inst, 202)) == 6)
    assert all(s.processed_at is None for s in stfs(inst, 202).values())
    assert all(s.dispatched_at is None for s in stfs(inst, 202).values())
    for site in ("E1_BNL", "E1_JLAB"):
        inst.executor.set_online(site, True)  # catch-up after the interruption
    assert inst.orchestrator.wait_run_finished(202, TIMEOUT)
    report = run_report(inst.db, inst.ddm, 202,
                        [naming.stf_filename(202, s) for s in range(6)])
    assert report["stfs_merged"] == 6 and report["lost"] == 0


def test_wrong_checksum_is_reported_and_never_archived_or_processed(
    installation_factory, tmp_path, daq_settings
):
    daq_settings.corrupt_sequences = {2}
    inst = installation_factory(settings=daq_settings)
    report = finished_run(inst, 203, 5)
    (issue,) = issues(inst, "checksum_mismatch")
    assert issue.filename == "swf.000203.000002.stf" and "DAQ says ad:" in issue.detail
    bad = stfs(inst, 203)[2]
    assert (bad.validation, bad.archive_status, bad.processing_status) == (
        "corrupt", "not_archived", "rejected")
    assert report["stfs_archived"] == 4 and report["stfs_merged"] == 4
    assert report["lost"] == 1  # reported, not hidden
    assert (tmp_path / "wfms/rses/DAQ_BUFFER/swf.000203.000002.stf").exists()  # data kept


def test_sequence_gap_is_reported(installation_factory, daq_settings):
    daq_settings.skip_sequences = {3}
    inst = installation_factory(settings=daq_settings)
    report = finished_run(inst, 204, 6)
    (gap,) = issues(inst, "sequence_gap")
    assert gap.filename == "swf.000204.000003.stf" and gap.resolved_at is None
    (missing,) = issues(inst, "missing_at_end_of_run")
    assert "sequences [3]" in missing.detail
    assert report["lost"] == 1 and report["stfs_merged"] == 5


def test_late_stf_resolves_its_gap(installation):
    inst = installation
    open_run(inst, 205)
    now = datetime.now(UTC)
    for sequence in (0, 2):
        inst.daq.write_stf(205, sequence, now)
    assert wait_for(lambda: len(issues(inst, "sequence_gap")) == 1)
    inst.daq.write_stf(205, 1, now)
    inst.daq.end_run(205, 3)
    assert inst.orchestrator.wait_run_finished(205, TIMEOUT)
    (gap,) = issues(inst, "sequence_gap")
    assert gap.resolved_at is not None
    assert issues(inst, "missing_at_end_of_run") == []


def test_payload_failure_is_retried(installation_factory, tmp_path, database_url):
    config = make_config(tmp_path, database_url)
    config.fault_injection.reco_failures.update({1: 1, 2: 2})
    inst = installation_factory(config)
    report = finished_run(inst, 206, 4)
    assert report["lost"] == 0
    seq1 = jobs_for(inst, naming.stf_filename(206, 1))
    seq2 = jobs_for(inst, naming.stf_filename(206, 2))
    assert [(j.attempt_nr, j.status) for j in seq1] == [(1, "failed"), (2, "finished")]
    assert [j.status for j in seq2] == ["failed", "failed", "finished"]
    assert "injected failure" in seq1[0].error and seq1[0].exit_code == 65
    assert stfs(inst, 206)[1].reco_output == "swf.000206.000001.reco.a2.json"  # immutable DIDs


def test_retries_are_bounded_and_failure_reported(installation_factory, tmp_path, database_url):
    config = make_config(tmp_path, database_url)
    config.fault_injection.reco_failures[0] = 99
    inst = installation_factory(config)
    report = finished_run(inst, 207, 3)
    assert len(jobs_for(inst, naming.stf_filename(207, 0))) == 3
    assert stfs(inst, 207)[0].processing_status == "failed"
    (issue,) = issues(inst, "processing_failed")
    assert "failed 3 times" in issue.detail
    assert report["lost"] == 1 and report["stfs_merged"] == 2


def test_processing_suspended_in_standby_and_caught_up_on_resume(installation):
    inst = installation
    open_run(inst, 208)
    now = datetime.now(UTC)
    for sequence in (0, 1):
        inst.daq.write_stf(208, sequence, now)
    inst.daq.pause_run(208)
    for sequence in (2, 3):
        inst.daq.write_stf(208, sequence, now)
    assert wait_for(lambda: {s: r.processing_status for s, r in stfs(inst, 208).items()
                             if s >= 2} == {2: "deferred", 3: "deferred"})
    assert wait_for(lambda: any(a == "suspended" for a, _, _ in gate_events(inst)))
    assert wait_for(lambda: all(stfs(inst, 208)[s].archive_status == "archived" for s in (2, 3)))
    assert jobs_for(inst, naming.stf_filename(208, 2)) == []
    inst.daq.resume_run(208)
    assert wait_for(lambda: all(stfs(inst, 208)[s].processed_at for s in (2, 3)))
    assert ("resumed", "back to physics (resume_run); catching up", 2) in gate_events(inst)
    inst.daq.write_stf(208, 4, now)
    inst.daq.end_run(208, 5)
    assert inst.orchestrator.wait_run_finished(208, TIMEOUT)
    report = run_report(inst.db, inst.ddm, 208,
                        [naming.stf_filename(208, s) for s in range(5)])
    assert report["lost"] == 0


def test_standby_backlog_is_caught_up_at_end_of_run(installation):
    inst = installation
    report = finished_run(inst, 209, 6, standby=range(3, 6))  # run ends while in standby
    assert report["lost"] == 0
    assert all(s.processed_at > s.received_at for s in stfs(inst, 209).values())


def test_idle_stream_suspends_and_next_stf_resumes(installation_factory, tmp_path, database_url):
    inst = installation_factory(make_config(tmp_path, database_url, idle_suspend_s=0.3))
    inst.daq.bring_up()
    inst.daq.stream_outside_run(1)
    assert wait_for(lambda: [a for a, _, _ in gate_events(inst)] == ["suspended"])
    assert "no STF for more than 0.3s" in gate_events(inst)[0][1]
    inst.daq.stream_outside_run(1)
    assert wait_for(lambda: [a for a, _, _ in gate_events(inst)][:2] == ["suspended", "resumed"])


def test_duplicate_announcements(installation):
    inst = installation
    open_run(inst, 210)
    stf = inst.daq.write_stf(210, 0, datetime.now(UTC))
    inst.daq.settings.corrupt_sequences = {0}
    inst.daq.write_stf(210, 0, stf.first_tf_time)  # rewritten with other content
    assert wait_for(lambda: len(issues(inst, "duplicate_conflict")) == 1)
    assert wait_for(lambda: len(stfs(inst, 210)) == 1)  # the first version is kept
    assert stfs(inst, 210)[0].adler32 == stf.adler32


def test_illegal_run_control_message_is_refused_and_reported(installation):
    inst = installation
    inst.daq.bring_up()
    inst.daq.resume_run(211)  # never started
    assert wait_for(lambda: len(issues(inst, "illegal_transition")) == 1)
    (issue,) = issues(inst, "illegal_transition")
    assert "'resume_run' is not legal in state beam/ready" in issue.detail
    assert "run_imminent" in issue.detail
    assert inst.orchestrator.state.machine.status.label == "beam/ready"


def test_restarted_tracker_resumes_from_history(installation_factory, tmp_path, database_url):
    first = installation_factory()
    first.daq.bring_up()
    first.daq.run_imminent(212)
    first.daq.start_run(212)
    assert wait_for(lambda: first.orchestrator.state.machine.status.label == "run/physics")
    first.close()
    second = installation_factory(first.config)  # same store: a restarted agent
    status = second.orchestrator.state.machine.status
    assert (status.label, status.open_run) == ("run/physics", 212)
    second.daq.end_run(212, 0)
    assert wait_for(lambda: second.orchestrator.state.machine.status.label == "beam/ready")


def test_run_closed_by_beam_loss_is_finalized(installation):
    inst = installation
    open_run(inst, 213)
    for sequence in range(3):
        inst.daq.write_stf(213, sequence, datetime.now(UTC))
    inst.daq.event("beam_lost", "no_beam", "not_ready", "beam abort")
    assert inst.orchestrator.wait_run_finished(213, TIMEOUT)
    report = run_report(inst.db, inst.ddm, 213,
                        [naming.stf_filename(213, s) for s in range(3)])
    assert report["lost"] == 0
    assert inst.ddm.list_files(DID("epic", naming.run_dataset(213)))


def test_testbed_daq_messages_drive_a_run(installation):
    """The ePIC testbed's own messages on /topic/epictopic, as its DAQ simulator sends them."""
    inst = installation
    inst.daq.bring_up()
    buffer = inst.config.data_dir / "rses" / "DAQ_BUFFER"
    common = {"namespace": "swf", "sender": "daq-simulator", "execution_id": "e1",
              "run_id": 214, "timestamp": "2026-11-25T12:00:00"}

    def send(msg_type, **fields):
        inst.bus.publish_raw(dest.TESTBED, json.dumps(
            {"msg_type": msg_type, **common, "state": "run", "substate": "physics", **fields}))

    send("run_imminent")
    send("start_run")
    for seq in range(3):
        name = f"swf.20261125.12000{seq}.run.physics.stf"
        write_stf(buffer / name, {"run_number": 214}, 10, 20, random.Random(seq))
        send("stf_gen", filename=name, sequence=seq, start=f"2026-11-25T12:00:0{seq}",
             end=f"2026-11-25T12:00:0{seq}.600000", size=(buffer / name).stat().st_size,
             checksum=f"ad:{file_adler32(buffer / name)}")
    send("end_run", total_files=3)
    inst.bus.publish_raw(dest.TESTBED, '{"msg_type": "stf_gen"}')
    assert inst.orchestrator.wait_run_finished(214, TIMEOUT)
    report = run_report(inst.db, inst.ddm, 214,
                        [naming.stf_filename(214, s) for s in range(3)])
    assert report["lost"] == 0 and report["stfs_archived"] == 3
    testbed_name = stfs(inst, 214)[1].daq_metadata["testbed_filename"]
    assert testbed_name == "swf.20261125.120001.run.physics.stf"
    with inst.db.session() as session:
        (letter,) = session.scalars(select(DeadLetterRecord)).all()
    assert letter.subscription == "testbed-bridge" and "lacks" in letter.reason


def test_agents_without_the_state_machine_stamp_the_current_state(installation, tmp_path):
    """An archive-only orchestrator (as in the archive agent) follows state_changed."""
    from epic_wfms.installation import Installation

    inst = installation
    archive_only = Installation(inst.config, inst.db, inst.bus, inst.ddm, None, ("archive",))
    archive_ctx = archive_only.start().ctx  # the same backends, as a second process would
    try:
        open_run(inst, 215)
        assert wait_for(lambda: (archive_ctx.detector.state, archive_ctx.detector.substate)
                        == ("run", "physics"))
    finally:
        archive_only.orchestrator.stop()


def test_a_late_start_run_does_not_reopen_a_run_closed_by_beam_loss(database_url):
    """Run control and the state topic are separate subscriptions: their order may swap."""
    db = Database(database_url)
    db.create_schema()
    try:
        started = datetime.now(UTC)
        ensure_run(db, 214, status="announced")
        ensure_run(db, 214, status="closed", end_time=started)
        ensure_run(db, 214, status="open", start_time=started)  # delivered late
        run = get_run(db, 214)
        assert (run.status, run.start_time is not None) == ("closed", True)
        ensure_run(db, 214, status="finished")
        assert get_run(db, 214).status == "finished"
    finally:
        db.dispose()
