"""The fast path's standing pool through iDDS's prompt service, PanDA and Harvester.

What runs for real: idds-server 2.6.21 with its prompt service (the Transceiver) and
daemons; the PanDA stack (server, JEDI's master, daemons, Harvester, Pilot 3); the STOMP
broker. At ``run_imminent`` the fast path (``fastpath.pool.provider: idds``) asks iDDS for
two workers; iDDS submits the PanDA task, JEDI makes two jobs at ``JLAB_EPIC_PROMPT``,
Harvester starts a pilot for each, and each pilot runs ``epic-fastpath``, ePIC's worker,
which takes TF slices from the broker until the run is over.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from epic_wfms.cli.services import write_config
from epic_wfms.config import load_config
from epic_wfms.daq import DaqSettings
from epic_wfms.fastpath.histograms import read_histograms
from epic_wfms.installation import Installation, open_database
from epic_wfms.store.schema import FastPathWorkerRecord, TfSliceRecord, utcnow
from epic_wfms.wfms.idds.client import IddsConnection, IddsSettings
from loopback.idds import LocalIddsServer
from loopback.panda.pilot import FASTPATH_TRANSFORMATION
from loopback.stack import RucioEndpoint, panda_stack
from tests.conftest import private_postgres_schema, wait_until

FASTPATH_QUEUE = "JLAB_EPIC_PROMPT"
RUN, SAMPLE_TFS = 420001, 10


@pytest.fixture(scope="module")
def worker_config(tmp_path_factory) -> Path:
    """The installation's configuration, as the site's ``epic-fastpath`` wrapper reads it
    (written by the test once the installation is configured)."""
    return tmp_path_factory.mktemp("fastpath") / "installation.yaml"


@pytest.fixture(scope="module")
def stack(rucio_server, tmp_path_factory, worker_config):
    server = rucio_server.server
    rucio = RucioEndpoint(server.config_file, server.url, server.username, server.password,
                          tuple(rucio_server.rses))
    with panda_stack(tmp_path_factory.mktemp("stack"), rucio,
                     pools={"BNL_EPIC_PROMPT": None, FASTPATH_QUEUE: None},
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
        stack, idds_server, worker_config, tmp_path):
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
            started = time.monotonic()
            daq.run_imminent(RUN)
            first = wait_until(lambda: live(db), 300, "a worker in a pilot job registers")
            print(f"run_imminent -> first worker {time.monotonic() - started:.1f} s")
            wait_until(lambda: len(live(db)) == 2, 120, "both workers register")
            assert all("-panda" in w.name for w in first)  # named after their PanDA job
            daq.start_run(RUN)
            for sequence in range(4):
                daq.write_stf(RUN, sequence, utcnow())
            wait_until(lambda: sum(s.status == "completed"
                                   for s in records(db, TfSliceRecord)) >= 4, 120,
                       "workers complete slices")
            # kill one worker's pilot: Harvester reports it failed, PanDA retries the job,
            # Harvester starts a new pilot, whose worker joins the pool
            before = {w.name for w in live(db)}
            victim = sorted(before)[0]
            os.kill(pilot_running(stack.harvester, panda_id(victim)), signal.SIGKILL)
            for sequence in range(4, 8):
                daq.write_stf(RUN, sequence, utcnow())
            [dead] = wait_until(lambda: [w for w in records(db, FastPathWorkerRecord)
                                         if w.status == "dead"], 60, "the lost worker is dead")
            assert dead.name == victim
            wait_until(lambda: len(live(db)) == 2 and {w.name for w in live(db)} != before,
                       300, "a replacement worker registers")
            daq.end_run(RUN, 8)
            expected = 8 * 3  # slices per STF sample of 10 TFs (5 per slice + express)
            wait_until(lambda: [s.status for s in records(db, TfSliceRecord)].count(
                "completed") == expected, 180, "every slice completed")
            wait_until(lambda: not live(db), 120, "the pool drains at end of run")
        finally:
            fastpath.close()
            daq_side.close()
        done = records(db, TfSliceRecord)
        assert len(done) == expected and {s.status for s in done} == {"completed"}
        assert read_histograms(db, RUN)["event_hits"]["entries"] == 8 * SAMPLE_TFS  # once each
        workers = records(db, FastPathWorkerRecord)
        assert sum(w.slices_done for w in workers) == expected
        assert sorted(w.status for w in workers) == ["dead", "exited", "exited"]
        # iDDS: the run's request, its PanDA task at the E1's queue, closed at end of run
        idds = IddsConnection(IddsSettings(idds_server.url, idds_server.token(), retries=1))
        name = f"swf.{RUN:06d}.{FASTPATH_QUEUE}.prompt"
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
