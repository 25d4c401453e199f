"""iDDS on the running loopback stack: conditions decided by iDDS on real job results.

What runs for real, nobody driving it: the loopback Rucio server (the run's dataset, its
STF at BNL_DISK); the PanDA stack as a chain (``loopback.stack``: PanDA server, JEDI's
master process, the server's daemons with ePIC's Adder plug-in, Harvester starting a Pilot 3
per activated job); idds-server 2.6.21 with its daemons (Clerk, Transformer, the Carrier's
Submitter, Poller and Finisher) talking to that PanDA server and that Rucio server.

The workflow is ``workflows.calibration_loop``: each iteration iDDS submits the calibration
work's JEDI task, JEDI makes a job per file, a pilot runs the calibration payload, which
writes its residual and constant to ``jobReport.json``; the pilot sends that to PanDA as the
job's metadata, iDDS's Poller reads it back through ``EpicPandaWork`` and iDDS evaluates the
loop condition on it: loop again (the next iteration gets the constant) or converge and
start the reconstruction.

The fast path's standing pool runs on the same stack, while those workflows run: at
``run_imminent`` the fast path (``fastpath.pool.provider: idds``) asks iDDS's prompt service
(its Transceiver) for two workers; iDDS submits the PanDA task, JEDI makes two jobs at
``JLAB_EPIC_PROMPT``, Harvester starts a pilot for each, and each pilot runs
``epic-fastpath``, ePIC's worker, which takes TF slices from the broker until the run is
over.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import uuid
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import select

from epic_wfms.cli.main import cli
from epic_wfms.cli.services import write_config
from epic_wfms.config import RucioConfig, load_config
from epic_wfms.daq import DaqSettings
from epic_wfms.ddm.interface import DID, FileSpec
from epic_wfms.ddm.rucio.backend import RucioDDM
from epic_wfms.fastpath.histograms import read_histograms
from epic_wfms.installation import Installation, open_database
from epic_wfms.model import naming
from epic_wfms.model.checksum import file_adler32
from epic_wfms.model.stf_file import write_stf
from epic_wfms.store.database import Database
from epic_wfms.store.schema import (
    FastPathWorkerRecord,
    PandaTaskRecord,
    TfSliceRecord,
    utcnow,
)
from epic_wfms.wfms.idds import files, workflows
from epic_wfms.wfms.idds.client import IddsConnection, IddsSettings
from epic_wfms.wfms.idds.track import record_request_tasks
from epic_wfms.wfms.panda import taskparams
from epic_wfms.wfms.payloads import calibrate
from loopback.idds import LocalIddsServer
from loopback.panda.pilot import FASTPATH_TRANSFORMATION, TRANSFORMATION
from loopback.stack import RucioEndpoint, panda_stack
from tests.conftest import private_postgres_schema, wait_until

QUEUE, RSE, SITE = "BNL_EPIC_PROMPT", "BNL_DISK", "E1_BNL"
RUN = 410001
TOLERANCE = 0.5  # residuals: iteration 1 in [0.6, 1.2), iteration 2 in [0.24, 0.48)
OWNER = "Carla Calibration"
FASTPATH_QUEUE, FASTPATH_RUN, SAMPLE_TFS = "JLAB_EPIC_PROMPT", 420001, 10


@pytest.fixture(scope="module")
def worker_config(tmp_path_factory) -> Path:
    """The installation's configuration, as the site's ``epic-fastpath`` wrapper reads it
    (written by the fast-path test once the installation is configured)."""
    return tmp_path_factory.mktemp("fastpath") / "installation.yaml"


@pytest.fixture(scope="module")
def stack(rucio_server, tmp_path_factory, worker_config):
    server = rucio_server.server
    rucio = RucioEndpoint(server.config_file, server.url, server.username, server.password,
                          tuple(rucio_server.rses))
    with panda_stack(tmp_path_factory.mktemp("stack"), rucio,
                     pools={QUEUE: None, FASTPATH_QUEUE: None},
                     fastpath_config=worker_config) as running:
        yield running


@pytest.fixture(scope="module")
def idds_server(stack, tmp_path_factory):
    tag = uuid.uuid4().hex[:8]
    server = LocalIddsServer(tmp_path_factory.mktemp("idds"), update_poll_s=3,
                             prompt_topic=f"/topic/panda.workflow.{tag}",
                             reply_topic=f"/topic/panda.workers.{tag}").start()
    who = stack.identity("iDDS Service")
    server.start_daemons(["clerk", "transformer", "submitter", "poller", "finisher",
                          "transceiver"],
                         env={**server.panda_env(stack.panda_url, who.token, who.auth_vo),
                              **server.rucio_env(stack.rucio.config_file)})
    yield server
    server.stop()


def rucio_ddm(stack) -> RucioDDM:
    r = stack.rucio
    return RucioDDM(RucioConfig(host=r.url, username=r.username, password=r.password,
                                scope="epic"), list(r.rses))


def run_dataset(stack, run: int, opaque: tuple[int, ...] = (),
                name: str | None = None) -> tuple[DID, list[str]]:
    """The run's dataset in Rucio (``name``, default the run's E1_BNL subset), closed (the
    run ended): one STF, or more with the sequence numbers in ``opaque`` holding bytes that
    are no STF."""
    ddm = rucio_ddm(stack)
    dataset = DID("epic", name or naming.site_dataset(run, SITE))
    ddm.add_dataset(dataset)
    names = []
    for seq in range(1, 2 + len(opaque)):
        name = naming.stf_filename(run, seq)
        path = Path(ddm.rse(RSE).path_for("epic", name))
        path.parent.mkdir(parents=True, exist_ok=True)
        if seq in opaque:
            path.write_bytes(b"not a super time frame\n")
        else:
            write_stf(path, {"run_number": run, "sequence": seq}, 4, 30, random.Random(run))
        ddm.register_and_attach([FileSpec(DID("epic", name), RSE, str(path),
                                          path.stat().st_size, file_adler32(path))],
                                {dataset: [DID("epic", name)]})
        names.append(name)
    ddm.close_dataset(dataset)
    return dataset, names


def finished(idds: IddsConnection, request_id: int) -> bool:
    status = idds.request(request_id, with_workflow=False).status
    assert status not in ("Failed", "Cancelled", "SubFinished"), status
    return status == "Finished"


def offline(params: dict) -> dict:
    """A task over the ended run (its dataset closed): not prompt processing, which JEDI
    keeps running until the dataset is closed (``runUntilClosed``, set for ePIC's prompt
    processing type by our task refiner; JEDI enables it whenever the key is present)."""
    out = {k: v for k, v in params.items() if k != "runUntilClosed"}
    return {**out, "processingType": "epic_calibration"}


@pytest.fixture(scope="module")
def idds(idds_server) -> IddsConnection:
    return IddsConnection(IddsSettings(idds_server.url, idds_server.token(OWNER), retries=1))


@pytest.fixture(scope="module")
def submitted(stack, idds_server, idds, tmp_path_factory) -> dict:
    """Both workflows submitted at once (they run side by side on the stack): the
    calibration template over run RUN with ``epic-wfms template submit calibration --target
    idds`` (an installation whose wfms names the loopback PanDA and iDDS), and
    process-when-validated over run RUN + 1 through the library."""
    options = taskparams.TaskOptions(site=QUEUE, container_image=None,
                                     extra={"transPath": TRANSFORMATION})
    run_dataset(stack, RUN, name=naming.run_dataset(RUN))  # the template's input dataset
    _, stfs = run_dataset(stack, RUN + 1, opaque=(2,))
    validation = offline(files.rename_outputs(taskparams.prompt_task(
        RUN + 1, SITE, options, command="python -m epic_wfms.wfms.payloads.validate"),
        ".validation"))
    reco_validated = offline(taskparams.prompt_task(RUN + 1, SITE, options))
    started = time.monotonic()
    # the installation: PanDA's production identity, iDDS as OWNER, tasks at QUEUE running
    # the pilot's transformation in this machine's environment
    home = tmp_path_factory.mktemp("installation")
    who = stack.identity()
    (home / "panda-token").write_text(who.token)
    (home / "idds-token").write_text(idds_server.token(OWNER))
    config = home / "config.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(home / "data"), "wfms": {
        "panda": {"url": stack.panda_url, "auth_vo": who.auth_vo,
                  "token_file": str(home / "panda-token"), "queues": {SITE: QUEUE},
                  "transformation": TRANSFORMATION, "container_image": None},
        "idds": {"host": idds_server.url, "token_file": str(home / "idds-token")}}}))
    # residuals 0.6-1.2, then 0.24-0.48 (see TOLERANCE): iDDS loops exactly twice
    args = ["template", "submit", "calibration", "--run", str(RUN), "--tolerance",
            str(TOLERANCE), "--offline-alignment", "false", "--target", "idds", "--json",
            "--config", str(config)]
    shown = CliRunner().invoke(cli, args, env={"EPIC_IDDS_HOST": None,
                                               "EPIC_IDDS_TOKEN_FILE": None})
    assert shown.exit_code == 0, shown.output
    calibration = json.loads(shown.output)
    return {"started": started, "config": config,
            "calibration": (calibration["idds_request_id"], calibration),
            "validated": (idds.submit(workflows.process_when_validated(
                validation, reco_validated)), validation, reco_validated, stfs)}


def records(db, model) -> list:
    with db.session() as session:
        return list(session.scalars(select(model)))


def live(db) -> list[FastPathWorkerRecord]:
    return [w for w in records(db, FastPathWorkerRecord) if w.status == "registered"]


def panda_id(worker: str) -> int:
    """The PanDA job a worker runs in: ``fpw-<run>-panda<PandaID>@<host>``."""
    return int(worker.split("@")[0].rsplit("-panda", 1)[1])


def pilot_running(harvester, job: int) -> int:
    """The Pilot 3 process of the Harvester worker that runs PanDA job ``job``."""
    for worker in harvester.workers(FASTPATH_QUEUE):
        if worker.alive and any(harvester.worker_dir(worker.worker_id).glob(
                f"work/*/PanDA_Pilot-{job}")):
            pid = harvester.pilot_pid(worker.worker_id)
            assert pid is not None
            return pid
    raise AssertionError(f"no live pilot runs PanDA job {job}")


def test_fast_path_workers_are_pilot_jobs_provisioned_through_idds(
        stack, idds_server, worker_config, submitted, tmp_path):
    """First in the module, while the workflows ``submitted`` started run beside it."""
    with private_postgres_schema() as url:
        config = load_config(
            data_dir=tmp_path / "wfms", database_url=url,
            bus={"transport": "stomp", "namespace": f"test-{uuid.uuid4().hex[:8]}",
                 "queue_expiry_s": 600},
            fastpath={"drain_grace_s": 0.5, "payload": {"extra_cost_s": 0.2},
                      "pool": {"min": 2, "target": 2, "max": 2, "provider": "idds",
                               "heartbeat_s": 1, "lost_after_s": 8, "idds": {
                                   "site": "E1_JLAB", "transformation": FASTPATH_TRANSFORMATION,
                                   "prompt_topic": idds_server.prompt_topic,
                                   "reply_topic": idds_server.reply_topic,
                                   "broker_vhost": "127.0.0.1", "idle_timeout_s": 600}}})
        write_config(config, worker_config)
        fastpath = Installation.build(config, roles=("ingest", "fastpath"))
        fastpath.start()
        daq_side = Installation.build(config, roles=(), name="test-daq")
        daq = daq_side.daq(DaqSettings(stf_size_bytes=8 * 1024, tfs_per_stf=20, rate_hz=0,
                                       tf_sample_size=SAMPLE_TFS))
        db = open_database(config)
        try:
            daq.bring_up()
            started = time.monotonic()
            daq.run_imminent(FASTPATH_RUN)
            first = wait_until(lambda: live(db), 300, "a worker in a pilot job registers")
            print(f"run_imminent -> first worker {time.monotonic() - started:.1f} s")
            wait_until(lambda: len(live(db)) == 2, 120, "both workers register")
            assert all("-panda" in w.name for w in first)  # named after their PanDA job
            daq.start_run(FASTPATH_RUN)
            for sequence in range(4):
                daq.write_stf(FASTPATH_RUN, sequence, utcnow())
            wait_until(lambda: sum(s.status == "completed"
                                   for s in records(db, TfSliceRecord)) >= 4, 120,
                       "workers complete slices")
            # kill one worker's pilot: Harvester reports it failed, PanDA retries the job,
            # Harvester starts a new pilot, whose worker joins the pool
            before = {w.name for w in live(db)}
            victim = sorted(before)[0]
            os.kill(pilot_running(stack.harvester, panda_id(victim)), signal.SIGKILL)
            for sequence in range(4, 8):
                daq.write_stf(FASTPATH_RUN, sequence, utcnow())
            [dead] = wait_until(lambda: [w for w in records(db, FastPathWorkerRecord)
                                         if w.status == "dead"], 60, "the lost worker is dead")
            assert dead.name == victim
            wait_until(lambda: len(live(db)) == 2 and {w.name for w in live(db)} != before,
                       300, "a replacement worker registers")
            daq.end_run(FASTPATH_RUN, 8)
            expected = 8 * 3  # slices per STF sample of 10 TFs (5 per slice + express)
            wait_until(lambda: [s.status for s in records(db, TfSliceRecord)].count(
                "completed") == expected, 180, "every slice completed")
            wait_until(lambda: not live(db), 120, "the pool drains at end of run")
        finally:
            fastpath.close()
            daq_side.close()
        done = records(db, TfSliceRecord)
        assert len(done) == expected and {s.status for s in done} == {"completed"}
        hits = read_histograms(db, FASTPATH_RUN)["event_hits"]
        assert hits["entries"] == 8 * SAMPLE_TFS  # every event once
        workers = records(db, FastPathWorkerRecord)
        assert sum(w.slices_done for w in workers) == expected
        assert sorted(w.status for w in workers) == ["dead", "exited", "exited"]
        # iDDS: the run's request, its PanDA task at the E1's queue, closed at end of run
        idds = IddsConnection(IddsSettings(idds_server.url, idds_server.token(), retries=1))
        name = f"swf.{FASTPATH_RUN:06d}.{FASTPATH_QUEUE}.prompt"
        request_id = idds.client.get_request_id_by_name(name=name)[name]
        [transform] = idds.transforms(request_id)
        panda = stack.connection()
        task = panda.task_params(transform.workload_id)
        assert (task["site"], task["PandaSite"], task["transPath"]) == (
            FASTPATH_QUEUE, "E1_JLAB", FASTPATH_TRANSFORMATION)
        # the killed pilot's job failed and was retried; the survivor and the retry finished
        # (their workers exited 0 at the drain, the pilots report it)
        wait_until(lambda: sorted(j.jobStatus for j in panda.jobs(panda.job_ids(
            transform.workload_id))) == ["failed", "finished", "finished"], 180,
            "the workers' jobs finish, the killed one failed")
        wait_until(lambda: idds.transforms(request_id)[0].processing_status != "Running", 60,
                   "iDDS takes the close at end of run")
        db.dispose()


def test_calibration_loop_converges_on_real_residuals_then_reconstructs(
        stack, idds_server, idds, submitted, tmp_path):
    request_id, submission = submitted["calibration"]
    assert submission["next"] == f"epic-wfms idds status {request_id}"
    calib, reco = submission["spec"]["works"]  # the template's steps: the loop, the reco
    iteration2 = calib.removesuffix("/") + ".it2/"
    wait_until(lambda: finished(idds, request_id), 900,
               "the calibration loop and the reconstruction finish")
    elapsed = time.monotonic() - submitted["started"]
    transforms = idds.transforms(request_id)
    names = [t.name for t in transforms]
    assert names == [calib + "/", iteration2, reco + "/"], names
    assert {t.status for t in transforms} == {"Finished"}
    # each iteration and the reconstruction is a PanDA task run by a pilot at the queue
    # wfms.panda.queues names, with the configured transformation, done
    panda = stack.connection()
    params = [panda.task_params(t.workload_id) for t in transforms]
    tasks = [p["taskName"] for p in params]
    assert tasks == [calib + "/", iteration2, reco + "/"]
    assert {(p["site"], p["transPath"]) for p in params} == {(QUEUE, TRANSFORMATION)}
    assert {panda.task_status(t.workload_id) for t in transforms} == {"done"}
    # what iDDS recorded per file: the STF consumed, the job's report on the output content
    stf = naming.stf_filename(RUN, 1)
    outputs = {f.transform_id: f for f in idds.files(request_id) if f.relation == "Output"}
    inputs = {(f.transform_id, f.name) for f in idds.files(request_id) if f.relation == "Input"}
    assert inputs == {(t.transform_id, stf) for t in transforms}
    first, second = (outputs[t.transform_id].metadata["report"] for t in transforms[:2])
    print(f"residuals {first['residual']:.3f} -> {second['residual']:.3f}, "
          f"loop + reco {elapsed:.0f} s")
    # iDDS looped on the payload's real residual, handing the constant to the next iteration
    assert first["residual"] > TOLERANCE >= second["residual"]
    assert second["previous"] == pytest.approx(first["constant"])
    stf_bytes = Path(rucio_ddm(stack).local_path(DID("epic", stf), RSE)).read_bytes()
    assert {k: second[k] for k in ("constant", "previous", "residual")} == pytest.approx(
        calibrate.iterate(first["constant"], stf_bytes))
    # the reconstruction got the converged constant (the option that took the loop's files)
    reco_command = unquote(panda.jobs(panda.job_ids(transforms[2].workload_id))[0]
                           .jobParameters)
    assert f"--calibration={second['constant']!r}" in reco_command, reco_command
    for t in transforms:
        assert outputs[t.transform_id].status == "Available"
        assert outputs[t.transform_id].metadata["job_status"] == "finished"
    # our store records each iteration's PanDA task (``epic-wfms panda tasks`` lists them)
    db = Database(f"sqlite:///{tmp_path / 'store.sqlite'}")
    db.create_schema()
    try:
        ids = record_request_tasks(db, idds, panda, request_id)
        assert ids == [t.workload_id for t in transforms]
        with db.session() as session:
            stored = {r.jedi_task_id: (r.task_name, r.status, r.run_number)
                      for r in session.query(PandaTaskRecord)}
    finally:
        db.dispose()
    assert [stored[i] for i in ids] == [(name, "done", RUN) for name in tasks]
    # ``epic-wfms idds status`` shows each iteration's PanDA task
    shown = CliRunner().invoke(cli, ["idds", "status", str(request_id), "--json", "--config",
                                     str(submitted["config"])],
                               env={"EPIC_IDDS_HOST": None, "EPIC_IDDS_TOKEN_FILE": None})
    assert shown.exit_code == 0, shown.output
    status = json.loads(shown.output.strip().splitlines()[-1])
    assert status["status"] == "Finished"
    assert [t["workload_id"] for t in status["transforms"]] == [
        t.workload_id for t in transforms]


def test_downstream_processes_only_the_files_the_upstream_validated(stack, idds, submitted):
    """Process-when-validated through pilots: the validation task's jobs report a verdict
    per STF (one of the two is no STF); iDDS starts the reconstruction on the validated STF
    only: its PanDA task reads that file alone (JEDI's ``files``), one job."""
    request_id, validation, reco, (good, bad) = submitted["validated"]
    wait_until(lambda: finished(idds, request_id), 600, "validation and reconstruction finish")
    print(f"validation + reconstruction done {time.monotonic() - submitted['started']:.0f} s "
          "after submission")
    up, down = idds.transforms(request_id)
    assert (up.name, down.name) == (validation["taskName"], reco["taskName"])
    contents = idds.files(request_id)
    verdicts = {f.name: f.metadata["report"]["validated"] for f in contents
                if f.transform_id == up.transform_id and f.relation == "Output"}
    assert verdicts == {good: True, bad: False}
    # the reconstruction consumed the validated STF only, in iDDS and in PanDA
    assert [(f.relation, f.name) for f in contents if f.transform_id == down.transform_id] \
        == [("Input", good), ("Output", good)]
    panda = stack.connection()
    [item] = [i for i in panda.task_params(down.workload_id)["jobParameters"]
              if i.get("param_type") == "input"]
    assert item["files"] == [good]
    jobs = panda.jobs(panda.job_ids(down.workload_id))
    assert [[f.lfn for f in j.Files if f.type == "input"] for j in jobs] == [[good]]
    assert panda.task_status(down.workload_id) == "done"
