"""JEDI's own agents and a real Pilot 3 on the loopback PanDA server, STFs in the real Rucio.

What runs for real: the STF subset dataset and its files in the loopback Rucio server;
JEDI's TaskRefiner, ContentsFeeder, JobGenerator (GenJobBroker, JobSplitter), TaskCommando
and PostProcessor, one cycle each, in-process on the server's database, reading Rucio
through our EpicJediDDMClient behind JEDI's own DDMInterface (jedi_cycle.py); panda-pilot
3.7.0.36 fetching a job, running the reco payload and reporting back; the server's Adder.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from epic_wfms.ddm.interface import DID, FileSpec
from epic_wfms.ddm.rucio.backend import RucioDDM
from epic_wfms.model import naming
from epic_wfms.model.checksum import file_adler32
from epic_wfms.model.stf_file import write_stf
from epic_wfms.store.database import Database
from epic_wfms.store.schema import PandaJobRecord, PandaTaskRecord, RunRecord, StfRecord
from epic_wfms.wfms.panda import taskparams
from epic_wfms.wfms.panda.client import PandaConnection, PandaSettings
from epic_wfms.wfms.panda.readback import sync_task
from epic_wfms.wfms.panda.submit import submit_tasks
from loopback.panda import LocalPandaServer
from loopback.panda.pilot import TRANSFORMATION, LocalPilot
from loopback.rucio.server import add_scope

QUEUE = "BNL_EPIC_PROMPT"
_runs = iter(range(300100, 300999))


@pytest.fixture(scope="module")
def jedi_server(tmp_path_factory, rucio_server) -> LocalPandaServer:
    server = LocalPandaServer(tmp_path_factory.mktemp("panda-jedi"),
                              rucio_config=rucio_server.server.config_file)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def panda(jedi_server) -> PandaConnection:
    who = jedi_server.identity("Epic Production", production=True)
    return PandaConnection(PandaSettings(jedi_server.url, who.token, who.auth_vo))


@pytest.fixture(scope="module")
def ddm(rucio_server) -> RucioDDM:
    """ePIC's Rucio scope ``epic`` (the task's dataset names), BNL_DISK as the STFs' RSE."""
    ddm = RucioDDM(rucio_server.settings("epic"), rucio_server.rses)
    add_scope(ddm.client, "epic")
    return ddm


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'store.sqlite'}")
    database.create_schema()
    yield database
    database.dispose()


def stfs_in_rucio(ddm: RucioDDM, db: Database, tmp_path: Path, run: int, n: int) -> list[str]:
    """Real STF files at BNL_DISK, attached to the run's open E1_BNL subset dataset in Rucio,
    and known to our store (the read-back ties jobs to them by file name)."""
    dataset = DID("epic", naming.site_dataset(run, "E1_BNL"))
    ddm.add_dataset(dataset)
    specs, now = [], datetime.now(UTC)
    with db.session() as s:
        s.add(RunRecord(number=run, run_type="physics", detector_config="test", status="open"))
        s.flush()
        for seq in range(1, n + 1):
            name = naming.stf_filename(run, seq)
            path = tmp_path / "daq" / name
            path.parent.mkdir(exist_ok=True)
            write_stf(path, {"run_number": run, "sequence": seq}, 4, 30, random.Random(seq))
            adler = file_adler32(path)
            specs.append(FileSpec(DID("epic", name), "BNL_DISK", str(path), path.stat().st_size,
                                  adler))
            s.add(StfRecord(filename=name, run_number=run, sequence=seq, first_tf_time=now,
                            last_tf_time=now, tf_count=4, size_bytes=path.stat().st_size,
                            adler32=adler, state="run", substate="physics", available_at=now,
                            validation="ok", site="E1_BNL"))
    ddm.register_and_attach(specs, {dataset: [spec.did for spec in specs]})
    return [spec.did.name for spec in specs]


def prompt_task(run: int) -> dict:
    """The E1_BNL prompt task, at its queue, running the pilot's ``epic-reco`` wrapper."""
    return taskparams.prompt_task(run, "E1_BNL", taskparams.TaskOptions(
        site=QUEUE, container_image=None, extra={"transPath": TRANSFORMATION}))


def test_jedi_generates_a_job_per_stf_and_a_real_pilot_runs_one(
        jedi_server, panda, ddm, db, tmp_path):
    run = next(_runs)
    stfs = stfs_in_rucio(ddm, db, tmp_path, run, 3)
    [task] = submit_tasks([prompt_task(run)], panda, db)
    task_id = task.jedi_task_id
    assert {r["jediTaskID"]: r["status"] for r in jedi_server.refine_tasks()}[task_id] == \
        "defined"
    # ContentsFeeder: JEDI reads the open dataset's files from Rucio -> ready
    [fed] = jedi_server.jedi_cycle("feed")
    assert task_id in fed["tasks"] and panda.task_status(task_id) == "ready"
    inputs = {f["lfn"] for f in panda.files_in_datasets(task_id)[0]["files"]}
    assert inputs == set(stfs)
    # JobGenerator: brokerage to the queue, one job per STF, activated (replicas on its disk)
    [generated] = jedi_server.jedi_cycle("generate")
    assert generated["jobs"] == 3 and panda.task_status(task_id) == "running"
    jobs = {int(j.PandaID): j for j in panda.jobs(panda.job_ids(task_id))}
    assert len(jobs) == 3
    read = {}
    for panda_id, job in jobs.items():
        assert int(job.jediTaskID) == task_id and job.computingSite == QUEUE
        assert job.jobStatus == "activated", job.jobStatus
        [lfn] = [f.lfn for f in job.Files if f.type == "input"]
        read[panda_id] = lfn
        assert f"--input={lfn}" in job.jobParameters
    assert sorted(read.values()) == stfs  # one job per STF, each STF once
    snapshot = sync_task(panda, db, task_id)
    assert snapshot.status == "running" and snapshot.stfs == read
    with db.session() as s:
        assert {r.panda_id: r.stf_filename for r in s.query(PandaJobRecord)} == read
        assert s.get(PandaTaskRecord, task_id).status == "running"

    # a real Pilot 3 takes one job, runs the reco payload on its STF, reports back
    who = jedi_server.identity("Epic Pilot", production=True)
    paths = {name: Path(ddm.local_path(DID("epic", name), "BNL_DISK")) for name in stfs}
    pilot = LocalPilot(jedi_server, tmp_path / "pilot").run(who, paths)
    assert pilot.exit_code == 0, pilot.failure()
    after = sync_task(panda, db, task_id).jobs
    ran = [i for i, status in after.items() if status != "activated"]
    assert len(ran) == 1 and after[ran[0]] == "holding", after  # the pilot's final update
    assert jedi_server.add_outputs() == ran  # the server's Adder finishes it
    assert sync_task(panda, db, task_id).jobs[ran[0]] == "finished"
    [job] = panda.jobs(ran)
    assert int(job.transExitCode) == 0 and job.endTime not in (None, "NULL")
    [out] = [f.lfn for f in job.Files if f.type == "output"]
    result = json.loads(pilot.outputs[out].read_text())
    assert result["stf"] == read[ran[0]] and result["n_tf"] == 4
    assert result["input_adler32"] == file_adler32(paths[read[ran[0]]])
    with db.session() as s:
        assert s.get(PandaJobRecord, ran[0]).status == "finished"


def test_jedi_acts_on_a_kill(jedi_server, panda, ddm, db, tmp_path):
    run = next(_runs)
    stfs_in_rucio(ddm, db, tmp_path, run, 2)
    [task] = submit_tasks([prompt_task(run)], panda, db)
    jedi_server.refine_tasks()
    jedi_server.jedi_cycle("feed", "generate")
    assert set(sync_task(panda, db, task.jedi_task_id).jobs.values()) == {"activated"}
    panda.kill_task(task.jedi_task_id)
    assert panda.task_status(task.jedi_task_id) == "running"  # a request, not yet acted on
    # TaskCommando kills the jobs, the PostProcessor ends the task
    jedi_server.jedi_cycle("command", "finish")
    snapshot = sync_task(panda, db, task.jedi_task_id)
    assert snapshot.status == "aborted"
    assert set(snapshot.jobs.values()) == {"cancelled"} and len(snapshot.jobs) == 2
    with db.session() as s:
        assert s.get(PandaTaskRecord, task.jedi_task_id).status == "aborted"
