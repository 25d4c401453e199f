"""The ePIC streaming testbed drives epic-wfms unchanged (issue 18).

The testbed's own workflow runner (swf-testbed ``workflows/workflow_runner.py`` with
swf-common-lib's ``BaseAgent``, pinned sources in their own virtualenv: loopback/testbed)
plays a run on RabbitMQ-STOMP, with a pause, against epic-wfms configured as
docs/operations.md#connect-the-testbed says. Nothing on the testbed side is changed: only its
documented settings (broker, monitor URL, namespace, where prompt_processing writes files,
shorter delays through its testbed.toml override sections).
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from epic_wfms.config import load_config
from epic_wfms.installation import Installation
from epic_wfms.model import naming
from epic_wfms.model.checksum import file_adler32
from epic_wfms.store.schema import (
    AwaitedStfRecord,
    DeadLetterRecord,
    GateEventRecord,
    IntegrityIssueRecord,
    RunRecord,
    StateTransitionRecord,
    StfRecord,
)
from epic_wfms.streaming.report import run_report
from epic_wfms.streaming.run_outcome import shortfall
from tests.conftest import private_postgres_schema, wait_for

testbed_harness = pytest.importorskip("loopback.testbed.venv")
from loopback.testbed.monitor import FIRST_RUN_NUMBER, TestbedMonitor  # noqa: E402
from loopback.testbed.runner import TestbedSettings, run_workflow  # noqa: E402
from loopback.testbed.source import SourceUnavailable  # noqa: E402

RUN = FIRST_RUN_NUMBER  # the stand-in monitor hands out swf-monitor's first run number
STFS_PER_PERIOD = 3
# the testbed's own delays are seconds each; its testbed.toml override section shortens them
FAST = {"no_beam_not_ready_delay": 0.3, "broadcast_delay": 0.2, "beam_not_ready_delay": 0.3,
        "beam_ready_delay": 0.2, "beam_not_ready_end_delay": 0.2, "standby_duration": 2.0}
WORKFLOW_ARGS = ["--stf-count", str(STFS_PER_PERIOD), "--physics-period-count", "2",
                 "--stf-interval", "0.4"]


@pytest.fixture(scope="module")
def testbed():
    try:
        return testbed_harness.ensure_testbed()
    except SourceUnavailable as error:
        pytest.skip(f"the testbed's sources are not reachable here: {error}")


@pytest.fixture
def wfms(tmp_path):
    """epic-wfms on the broker the testbed uses, following one testbed namespace."""
    namespace = f"tb-{uuid.uuid4().hex[:8]}"
    buffer = tmp_path / "daq"
    with private_postgres_schema() as url:
        config = load_config(
            data_dir=tmp_path / "wfms", database_url=url,
            # the testbed's STOMP clients send their broker host name as virtual host
            bus={"transport": "stomp", "vhost": "127.0.0.1",
                 "namespace": f"test-{uuid.uuid4().hex[:8]}", "queue_expiry_s": 60},
            rses=[{"name": "DAQ_BUFFER", "site": "E0_EIC", "type": "DISK", "root": str(buffer)},
                  {"name": "BNL_DISK", "site": "E1_BNL", "type": "DISK"},
                  {"name": "BNL_TAPE", "site": "E1_BNL", "type": "TAPE"},
                  {"name": "JLAB_DISK", "site": "E1_JLAB", "type": "DISK"},
                  {"name": "JLAB_TAPE", "site": "E1_JLAB", "type": "TAPE"}],
            testbed={"namespace": namespace, "file_grace_s": 3.0},
            processing={"merge_every": 2, "missing_grace_s": 3.0},
            fastpath={"enabled": False},
        )
        installation = Installation.build(config)
        try:
            yield installation.start(), installation, namespace, buffer
        finally:
            installation.close()


def play(testbed, workflow: str, namespace: str, buffer: Path, workdir: Path) -> None:
    settings = TestbedSettings(namespace=namespace, container=buffer, daq_state_machine=FAST)
    with TestbedMonitor() as monitor:
        run_workflow(testbed, settings, workflow, monitor.url, workdir, WORKFLOW_ARGS)


def rows(db, model, *where):
    order = {RunRecord: RunRecord.number, AwaitedStfRecord: AwaitedStfRecord.sequence,
             StfRecord: StfRecord.sequence}
    with db.session() as session:
        return session.scalars(select(model).where(*where).order_by(
            order.get(model, getattr(model, "id", None)))).all()


def diagnose(db) -> dict:
    """What a run that did not end as expected is waiting for."""
    return {"runs": [(r.number, r.status) for r in rows(db, RunRecord)],
            "stfs": [(s.sequence, s.validation, s.archive_status, s.processing_status)
                     for s in rows(db, StfRecord)],
            "dead_letters": [d.reason for d in rows(db, DeadLetterRecord)],
            "issues": [(i.kind, i.detail) for i in rows(db, IntegrityIssueRecord)],
            "short": shortfall(db, RUN)}


def test_prompt_processing_runs_through_epic_wfms(testbed, wfms, tmp_path):
    orchestrator, backends, namespace, buffer = wfms
    db = backends.db
    play(testbed, "prompt_processing", namespace, buffer, tmp_path / "testbed")
    assert orchestrator.wait_run_ended(RUN, 120) == "finished", diagnose(db)

    n = 2 * STFS_PER_PERIOD
    produced = [naming.stf_filename(RUN, seq) for seq in range(1, n + 1)]
    report = run_report(db, backends.ddm, RUN, produced)
    assert (report["stfs_registered"], report["stfs_archived"], report["stfs_processed"],
            report["stfs_merged"], report["lost"]) == (n, n, n, n, 0)
    assert report["integrity_issues"] == {} and report["dead_letters"] == 0  # no false gap
    stfs = rows(db, StfRecord, StfRecord.run_number == RUN)
    assert [s.sequence for s in stfs] == list(range(1, n + 1))
    for stf in stfs:  # measured on arrival, from the file the testbed wrote
        path = buffer / f"swf.{RUN}.run" / stf.filename
        assert (stf.size_bytes, stf.adler32) == (path.stat().st_size, file_adler32(path))
        assert "measured by epic-wfms" in stf.daq_metadata["size_and_adler32"]
        assert stf.daq_metadata["namespace"] == namespace
    (run,) = rows(db, RunRecord, RunRecord.number == RUN)
    assert (run.first_sequence, run.total_stfs) == (1, n)

    # the machine followed the testbed without a bring-up of ours; the pause held processing
    history = rows(db, StateTransitionRecord, StateTransitionRecord.run_number == RUN)
    assert [(h.trigger, f"{h.to_state}/{h.to_substate}", h.synchronised) for h in history] == [
        ("run_imminent", "beam/not_ready", True), ("start_run", "run/physics", True),
        ("pause_run", "run/standby", False), ("resume_run", "run/physics", False),
        ("end_run", "beam/ready", False)]
    pause, resume = history[2].occurred_at, history[3].occurred_at
    gates = rows(db, GateEventRecord, GateEventRecord.run_number == RUN)
    suspended = [g for g in gates if g.action == "suspended" and "standby" in g.reason]
    resumed = [g for g in gates if g.action == "resumed" and "physics" in g.reason]
    assert suspended and pause <= suspended[0].occurred_at <= resume
    assert resumed and resumed[0].occurred_at >= resume


def test_stf_datataking_without_files_is_recorded_and_not_a_success(testbed, wfms, tmp_path):
    """Messages only: each STF waits for its file; the one that appears (put there by hand
    while the run goes) is registered, the others are reported missing in one issue."""
    orchestrator, backends, namespace, buffer = wfms
    db = backends.db
    pool = ThreadPoolExecutor(1)
    player = pool.submit(play, testbed, "stf_datataking", namespace, buffer, tmp_path / "testbed")
    try:
        assert wait_for(lambda: rows(db, AwaitedStfRecord, AwaitedStfRecord.sequence == 2))
        (awaited,) = rows(db, AwaitedStfRecord, AwaitedStfRecord.sequence == 2)
        late = Path(awaited.path)  # inside the DAQ buffer, by the testbed's layout
        assert late.parent == buffer / f"swf.{RUN}.run"
        late.parent.mkdir(parents=True, exist_ok=True)
        late.write_text('{"written": "late, by hand"}\n')
    finally:
        pool.shutdown()
    player.result()  # the testbed's run ended well (its errors are raised here)
    assert orchestrator.wait_run_ended(RUN, 120) == "incomplete", diagnose(db)

    n = 2 * STFS_PER_PERIOD
    stfs = rows(db, StfRecord, StfRecord.run_number == RUN)
    assert [(s.sequence, s.validation) for s in stfs] == [
        (seq, "ok" if seq == 2 else "missing") for seq in range(1, n + 1)]
    assert (stfs[1].processing_status, stfs[1].size_bytes) == ("merged", late.stat().st_size)
    issues = rows(db, IntegrityIssueRecord, IntegrityIssueRecord.resolved_at.is_(None))
    assert [(i.kind, i.run_number) for i in issues] == [("stf_file_missing", RUN)]
    assert f"{n - 1} STF file(s)" in issues[0].detail
    assert f"sequences 1, 3-{n}" in issues[0].detail
    assert rows(db, DeadLetterRecord) == []
    triggers = [h.trigger for h in rows(db, StateTransitionRecord,
                                        StateTransitionRecord.run_number == RUN)]
    assert triggers == ["run_imminent", "start_run", "pause_run", "resume_run", "end_run"]
    assert any("never appeared" in reason for reason in shortfall(db, RUN))
