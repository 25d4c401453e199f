"""A whole streaming run done by the real stack (issue 21): the installation is the product's,
built from configuration (``wfms.backend: panda``, ``ddm.backend: rucio``); the servers are
the loopback harness's (Rucio, the PanDA server with JEDI's master and the server's daemons,
Harvester starting a Pilot 3 per job activated at an E1 queue).

While the STFs arrive, ingest registers them in Rucio and attaches them to the run's E1
datasets; the process role submits each E1's prompt task once its first STF is at that E1;
JEDI makes a job per STF, pilots run the reco payload, ePIC's Adder registers the outputs;
merges and the gather run as PanDA jobs too. One STF's first attempt fails in its payload,
another's pilot is killed (``kill -9``) mid-job: JEDI retries both, and every STF is processed
exactly once. At the end the datasets are closed, the tasks end by themselves, and the merged
output holds every STF. (The fast path through iDDS, which the demo runs beside it, is
tested on the stack in ``test_idds_stack.py``.) The killed pilot's job is failed when
Harvester reports its worker dead; PanDA's own heartbeat timeout stays the harness's 150 s,
longer than a failed payload's pilot stays silent (Pilot 3 waits about 2 minutes before its
final report of a failed job).
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from epic_wfms.cli.demo import DemoOptions, run_demo
from epic_wfms.config import load_config
from epic_wfms.ddm import DID
from epic_wfms.installation import build_ddm, build_panda_connection, open_database
from epic_wfms.model import naming
from epic_wfms.store.schema import JobRecord, PandaTaskRecord, StfRecord
from epic_wfms.wfms.panda.report import settle_tasks
from loopback.panda.demo import stack_for
from tests.conftest import wait_for

STFS = 5
FAILS, HANGS = 1, 3  # sequences: the first attempt fails / its pilot is killed mid-job


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    directory = tmp_path / "markers"
    directory.mkdir()
    return directory


def test_a_streaming_run_is_processed_by_panda_jedi_harvester_and_pilots(tmp_path, markers):
    run = 101  # the demo's first run number in a new store
    (markers / f"{naming.stf_filename(run, FAILS)}.fail").touch()
    (markers / f"{naming.stf_filename(run, HANGS)}.hang").touch()
    config = load_config(data_dir=tmp_path / "wfms", fastpath={"enabled": False},
                         processing={"missing_grace_s": 5.0})
    options = DemoOptions(stfs=STFS, rate_hz=1.0, pre_run_stfs=0, timeout_s=900)
    with stack_for(config, lambda *_: None, fault_markers=markers) as (config, stack):
        report: dict = {}
        demo = threading.Thread(target=lambda: report.update(run_demo(config, options, None)),
                                name="demo", daemon=True)
        demo.start()
        hanging = markers / f"{naming.stf_filename(run, HANGS)}.hanging"
        assert wait_for(lambda: hanging.exists() and hanging.read_text().strip(), 600)
        worker = int(hanging.read_text().split()[0])
        pilot = stack.harvester.pilot_pid(worker)
        assert pilot is not None
        os.kill(pilot, signal.SIGKILL)  # the pilot dies mid-job, as on a lost node
        demo.join(timeout=960)
        assert not demo.is_alive() and report, "the run did not end"
        db = open_database(config)
        try:
            assert settle_tasks(build_panda_connection(config), db, run, timeout_s=600)
            ddm = build_ddm(config, db)
            datasets = [naming.run_dataset(run), *(naming.site_dataset(run, s.name)
                                                   for s in config.sites)]
            closed = {d: not ddm.is_open(DID(naming.SCOPE, d)) for d in datasets}
            merged = json.loads(Path(ddm.local_path(
                DID(naming.SCOPE, report["merged_output"]), "BNL_DISK")).read_text())
            with db.session() as session:
                jobs = list(session.scalars(select(JobRecord).where(
                    JobRecord.run_number == run).order_by(JobRecord.id)))
                tasks = list(session.scalars(select(PandaTaskRecord).where(
                    PandaTaskRecord.run_number == run)))
                stfs = {s.sequence: s for s in session.scalars(select(StfRecord).where(
                    StfRecord.run_number == run))}
            workers = stack.harvester.workers()
        finally:
            db.dispose()

    assert report["finished"] and report["lost"] == 0, report
    assert report["stfs_processed"] == report["stfs_merged"] == STFS, report
    assert all(closed.values()), closed  # end of run closed the datasets in Rucio
    assert {t.kind for t in tasks} == {"prompt"} and {t.status for t in tasks} == {"done"}
    assert sorted(merged["stfs"]) == [naming.stf_filename(run, s) for s in range(STFS)]
    # every job ran on PanDA: a PandaID, each run by a pilot Harvester started
    assert jobs and all(j.panda_id is not None for j in jobs)
    by_pilots = {pid for w in workers for pid in w.panda_ids}
    assert {j.panda_id for j in jobs if j.status == "finished"} <= by_pilots
    reco = {}
    for job in jobs:
        if job.kind == "reco":
            reco.setdefault(job.stf_filename, []).append(job)
    for sequence, stf in stfs.items():
        attempts = sorted(reco[stf.filename], key=lambda j: j.attempt_nr)
        assert [j.status for j in attempts].count("finished") == 1, (sequence, attempts)
        assert stf.processing_status == "merged" and stf.reco_output
        if sequence in (FAILS, HANGS):  # JEDI retried the attempt that failed
            assert [j.status for j in attempts] == ["failed", "finished"], attempts
            assert attempts[0].attempt_nr < attempts[1].attempt_nr
        else:
            assert len(attempts) == 1, attempts
    assert "65" in str(reco[naming.stf_filename(run, FAILS)][0].exit_code) or \
        "65" in (reco[naming.stf_filename(run, FAILS)][0].error or "")
    assert "signal 9" in (reco[naming.stf_filename(run, HANGS)][0].error or "")
    assert {j.kind for j in jobs} == {"reco", "merge", "gather"}
    assert not stack.harvester.worker_processes()  # stopped with its block: no pilot left
