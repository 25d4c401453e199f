"""An STF that arrives after its run was finalized is not dead-lettered nor dropped: the run
is reopened and gathered again, and its issues close themselves (issue 19)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from epic_wfms.ddm import DID
from epic_wfms.lifecycle.merge import MergeKind
from epic_wfms.model import naming
from epic_wfms.store.integrity import open_issues
from epic_wfms.store.schema import (
    AgentRecord,
    DeadLetterRecord,
    IntegrityIssueRecord,
    MergeRecord,
    RunRecord,
    utcnow,
)
from epic_wfms.streaming.report import merged_stfs
from tests.conftest import wait_for

TIMEOUT = 60


def run_row(inst, run):
    with inst.db.session() as session:
        return session.get(RunRecord, run)


def test_an_stf_after_its_run_was_gathered_is_gathered_again(installation_factory,
                                                             daq_settings):
    daq_settings.skip_sequences = {3}
    inst = installation_factory(settings=daq_settings)
    inst.daq.bring_up()
    inst.daq.physics_run(220, 6)
    assert inst.orchestrator.wait_run_ended(220, TIMEOUT) == "incomplete"
    first_output = run_row(inst, 220).merged_output
    assert len(merged_stfs(inst.ddm, inst.db, 220)) == 5
    assert [i.kind for i in open_issues(inst.db, 220)] == ["sequence_gap",
                                                           "missing_at_end_of_run"]

    daq_settings.skip_sequences.clear()  # the DAQ delivers it late, as it was taken
    inst.daq.state, inst.daq.substate = "run", "physics"
    inst.daq.write_stf(220, 3, datetime.now(UTC))
    assert wait_for(lambda: run_row(inst, 220).status == "finished", TIMEOUT), \
        run_row(inst, 220).status

    run = run_row(inst, 220)
    assert run.merged_output == "swf.000220.run.merged.g2.json" != first_output
    assert sorted(merged_stfs(inst.ddm, inst.db, 220)) == [
        naming.stf_filename(220, s) for s in range(6)]  # every STF exactly once
    assert open_issues(inst.db, 220) == []  # the gap and the missing STF closed themselves
    with inst.db.session() as session:
        gathers = session.execute(select(MergeRecord.output, MergeRecord.status).where(
            MergeRecord.run_number == 220, MergeRecord.kind == MergeKind.GATHER
        ).order_by(MergeRecord.id)).all()
        late = session.scalars(select(IntegrityIssueRecord.detail).where(
            IntegrityIssueRecord.kind == "late_stf")).all()
        letters = session.scalar(select(func.count()).select_from(DeadLetterRecord))
    assert [tuple(g) for g in gathers] == [(first_output, "superseded"),
                                           ("swf.000220.run.merged.g2.json", "done")]
    assert len(late) == 1 and "was incomplete" in late[0]
    assert letters == 0
    assert inst.ddm.is_open(DID(naming.SCOPE, naming.run_dataset(220))) is False  # closed


def test_the_grace_for_late_stfs_runs_only_while_ingest_is_alive(installation):
    """Merging as in an agent of its own (ingest elsewhere): the grace counts from the start
    of the live ingest agent, and not at all while no ingest agent is alive."""
    inst = installation
    merging = inst.orchestrator.merging
    merging.ingest_in_process = False
    long_ago = utcnow() - timedelta(hours=1)
    with inst.db.session() as session:
        session.add(RunRecord(number=230, run_type="physics", detector_config="x",
                              status="closed", end_time=long_ago, total_stfs=3))
    run = run_row(inst, 230)
    assert merging._all_received(run) is True  # no ingest agent at all: the DAQ's clock

    def ingest(name, status, started, beat):
        with inst.db.session() as session:
            session.merge(AgentRecord(name=name, role="ingest", host="h", pid=1, status=status,
                                      started_at=started, heartbeat_at=beat))

    ingest("ingest@h:1", "running", long_ago, long_ago)  # killed -9 an hour ago
    assert merging._all_received(run) is False  # nobody takes in the backlog: wait
    ingest("ingest@h:2", "running", utcnow(), utcnow())  # restarted just now
    assert merging._all_received(run) is False  # its backlog may still be coming: grace
    just_past = utcnow() - timedelta(seconds=inst.config.processing.missing_grace_s + 1)
    ingest("ingest@h:2", "running", just_past, utcnow())
    assert merging._all_received(run) is True  # alive and quiet for the grace: given up on
    (issue,) = open_issues(inst.db, 230)
    assert issue.kind == "missing_at_end_of_run" and "3 never arrived" in issue.detail
    assert merging._all_received(run) is True
    assert len(open_issues(inst.db, 230)) == 1  # one issue per run, however often checked
