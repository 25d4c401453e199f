"""The pool provisioned through iDDS (``fastpath.pool.provider: idds``) with its real
pilot-job workers, over the real STOMP broker and PostgreSQL, without the PanDA stack.

The pool asks iDDS's prompt topic for workers; here the test reads those requests off the
broker and starts each requested worker the way the job iDDS submits runs it (Harvester's
pilot running ``epic-fastpath``): ``python -m epic_wfms.fastpath.pilot_worker --config
<installation> --run_id <run> --idle_timeout <s>`` with the job's ``PANDAID``. The whole
chain through idds-server, JEDI, Harvester and Pilot 3 is ``test_fastpath_idds.py``.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import stomp
from sqlalchemy import select

from epic_wfms.cli.services import write_config
from epic_wfms.config import load_config
from epic_wfms.daq import DaqSettings
from epic_wfms.errors import ConfigurationError
from epic_wfms.fastpath.histograms import read_histograms
from epic_wfms.installation import Installation, open_database
from epic_wfms.store.schema import FastPathWorkerRecord, TfSliceRecord, utcnow
from tests.conftest import wait_for

RUN, SAMPLE_TFS = 430001, 10


class PromptTopic(stomp.ConnectionListener):
    """What the pool asks iDDS's prompt service, read off the broker; each new
    ``create_workflow_task`` gets its workers started as their pilots would run them."""

    def __init__(self, topic: str, start_worker) -> None:
        self.requests: list[dict] = []
        self.subscribed = threading.Event()
        self.start_worker = start_worker
        self._names: set[str] = set()
        self.conn = stomp.Connection12([("127.0.0.1", 61613)], vhost="/")
        self.conn.set_listener("", self)
        self.conn.connect("guest", "guest", wait=True)
        self.conn.subscribe(topic, id="1", ack="auto", headers={"receipt": "subscribed"})
        assert self.subscribed.wait(10)

    def on_receipt(self, frame) -> None:
        self.subscribed.set()

    def on_message(self, frame) -> None:
        request = json.loads(frame.body)
        self.requests.append(request)
        if request["msg_type"] == "create_workflow_task":
            workflow = request["content"]["workflow"]
            if workflow["name"] not in self._names:  # a resent request makes no new task
                self._names.add(workflow["name"])
                attributes = workflow["content"]["panda_attributes"]
                for _ in range(workflow["content"]["target_worker_count"]):
                    self.start_worker(["--run_id", str(workflow["content"]["run_id"]),
                                       "--idle_timeout", str(attributes["idle_timeout"])])

    def of(self, kind: str) -> list[dict]:
        return [r for r in self.requests if r["msg_type"] == kind]

    def close(self) -> None:
        self.conn.disconnect()


class Pilots:
    """Worker processes as pilots run them, each in its own process group, a PandaID each."""

    def __init__(self, config_file: Path, logs: Path) -> None:
        self.config_file, self.logs = config_file, logs
        self.jobs = itertools.count(9001)
        self.procs: dict[int, subprocess.Popen] = {}
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, arguments: list[str]) -> int:
        panda_id = next(self.jobs)
        with open(self.logs / f"{panda_id}.log", "wb") as log:
            self.procs[panda_id] = subprocess.Popen(
                [sys.executable, "-m", "epic_wfms.fastpath.pilot_worker", "--config",
                 str(self.config_file), *arguments], stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PANDAID": str(panda_id)}, start_new_session=True)
        return panda_id

    def kill(self, panda_id: int) -> None:
        os.killpg(self.procs[panda_id].pid, signal.SIGKILL)  # the pilot's node is lost
        self.procs[panda_id].wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class Rig:
    """The fast path (with the ingest role keeping the run records) in this process, the
    DAQ simulator beside it, the pilots, and what the pool asks iDDS."""

    def __init__(self, tmp_path: Path, url: str, **fastpath: object) -> None:
        namespace = f"test-{uuid.uuid4().hex[:8]}"
        pool = {"min": 2, "target": 2, "max": 2, "provider": "idds", "heartbeat_s": 0.5,
                "lost_after_s": 3, "idds": {
                    "site": "E1_JLAB", "idle_timeout_s": 120,
                    "prompt_topic": f"/topic/panda.workflow.{namespace}",
                    "reply_topic": f"/topic/panda.workers.{namespace}"},
                **fastpath.pop("pool", {})}
        self.config = load_config(
            data_dir=tmp_path / "wfms", database_url=url,
            bus={"transport": "stomp", "namespace": namespace, "queue_expiry_s": 60},
            fastpath={"drain_grace_s": 0.5, "payload": {"extra_cost_s": 0.1}, "pool": pool,
                      **fastpath})
        self.pilots = Pilots(write_config(self.config, tmp_path / "installation.yaml"),
                             tmp_path / "jobs")
        self.prompt = PromptTopic(self.config.fastpath.pool.idds.prompt_topic,
                                  self.pilots.start)
        self.fastpath = self.start_fastpath()
        self.daq_side = Installation.build(self.config, roles=(), name="test-daq")
        self.daq = self.daq_side.daq(DaqSettings(stf_size_bytes=8 * 1024, tfs_per_stf=20,
                                                 rate_hz=0, tf_sample_size=SAMPLE_TFS))
        self.db = open_database(self.config)

    def start_fastpath(self) -> Installation:
        installation = Installation.build(self.config, roles=("ingest", "fastpath"))
        installation.start()
        return installation

    def close(self) -> None:
        self.pilots.stop()
        self.fastpath.close()
        self.daq_side.close()
        self.prompt.close()
        self.db.dispose()


@pytest.fixture
def rig(tmp_path: Path, postgres_url: str):
    rig = Rig(tmp_path, postgres_url)
    try:
        yield rig.db, rig.daq, rig.pilots, rig.prompt
    finally:
        rig.close()


def records(db, model) -> list:
    with db.session() as session:
        return list(session.scalars(select(model)))


def live(db) -> dict[str, FastPathWorkerRecord]:
    return {w.name: w for w in records(db, FastPathWorkerRecord) if w.status == "registered"}


def completed(db) -> int:
    return [s.status for s in records(db, TfSliceRecord)].count("completed")


def test_pilot_job_workers_do_each_slice_once_and_leave_at_end_of_run(rig):
    db, daq, pilots, prompt = rig
    daq.run_imminent(RUN)
    assert wait_for(lambda: len(live(db)) == 2, 60), records(db, FastPathWorkerRecord)
    [create] = prompt.of("create_workflow_task")
    content = create["content"]["workflow"]["content"]
    assert (content["run_id"], content["target_worker_count"], content["site"],
            content["panda_attributes"]["queue"],
            content["panda_attributes"]["processing_type"]) == (
        RUN, 2, "E1_JLAB", "JLAB_EPIC_PROMPT", "epic_fastpath")
    assert {name.split("@")[0] for name in live(db)} == {
        f"fpw-{RUN:06d}-panda9001", f"fpw-{RUN:06d}-panda9002"}
    daq.start_run(RUN)
    for sequence in range(4):
        daq.write_stf(RUN, sequence, utcnow())
    assert wait_for(lambda: completed(db) >= 3, 60)
    pilots.kill(9001)  # mid-run, maybe mid-slice: its slice goes back to the broker
    for sequence in range(4, 8):
        daq.write_stf(RUN, sequence, utcnow())
    assert wait_for(lambda: any(w.status == "dead" for w in records(db, FastPathWorkerRecord)),
                    30)
    pilots.start(["--run_id", str(RUN), "--idle_timeout", "120"])  # PanDA's retry of the job
    assert wait_for(lambda: len(live(db)) == 2, 60)
    daq.end_run(RUN, 8)
    expected = 8 * 3  # per STF: two slices of 5 TFs and the express slice
    assert wait_for(lambda: completed(db) == expected, 90), [
        (s.name, s.status, s.attempts, s.worker) for s in records(db, TfSliceRecord)]
    assert wait_for(lambda: not live(db), 30)  # drained: every worker left
    exits = {panda_id: proc.wait(timeout=30) for panda_id, proc in pilots.procs.items()}
    assert exits == {9001: -signal.SIGKILL, 9002: 0, 9003: 0}  # their jobs finish
    assert read_histograms(db, RUN)["event_hits"]["entries"] == 8 * SAMPLE_TFS  # once each
    workers = {w.name.split("@")[0]: w for w in records(db, FastPathWorkerRecord)}
    assert {name: w.status for name, w in workers.items()} == {
        f"fpw-{RUN:06d}-panda9001": "dead", f"fpw-{RUN:06d}-panda9002": "exited",
        f"fpw-{RUN:06d}-panda9003": "exited"}
    assert sum(w.slices_done for w in workers.values()) == expected
    assert "pilot is gone" in workers[f"fpw-{RUN:06d}-panda9001"].detail
    assert wait_for(lambda: prompt.of("close_workflow_task"), 10)  # iDDS closes the task
    assert prompt.of("close_workflow_task")[0]["run_id"] == RUN


def test_a_restarted_fast_path_adopts_its_pilot_job_workers(tmp_path, postgres_url):
    """The fast-path process stops mid-run (its pilot jobs go on); started again, it asks
    iDDS for nothing new, adopts the workers as they report, and the run ends as usual."""
    rig = Rig(tmp_path, postgres_url)
    try:
        rig.daq.run_imminent(RUN)
        assert wait_for(lambda: len(live(rig.db)) == 2, 60)
        rig.daq.start_run(RUN)
        for sequence in range(3):
            rig.daq.write_stf(RUN, sequence, utcnow())
        assert wait_for(lambda: completed(rig.db) >= 2, 60)
        rig.fastpath.close()  # the agent stops; its workers keep their slices coming
        for sequence in range(3, 6):
            rig.daq.write_stf(RUN, sequence, utcnow())
        rig.fastpath = rig.start_fastpath()
        rig.daq.end_run(RUN, 6)
        assert wait_for(lambda: completed(rig.db) == 6 * 3, 90), [
            (s.name, s.status) for s in records(rig.db, TfSliceRecord)]
        assert wait_for(lambda: not live(rig.db), 30)
        assert [p.wait(timeout=30) for p in rig.pilots.procs.values()] == [0, 0]
        assert len(rig.prompt.of("create_workflow_task")) == 1  # nothing asked twice
        assert read_histograms(rig.db, RUN)["event_hits"]["entries"] == 6 * SAMPLE_TFS
        assert {w.status for w in records(rig.db, FastPathWorkerRecord)} == {"exited"}
    finally:
        rig.close()


def test_the_pool_grows_by_an_extra_request_and_shrinks_by_retiring_workers(
        tmp_path, postgres_url):
    """iDDS 2.6.21 drops adjust_worker's count: the autoscaler's growth is asked for as a
    request of its own (``.x1``), its shrink retires the idlest worker, which exits 0."""
    rig = Rig(tmp_path, postgres_url, latency_target_s=0.5, scale_cooldown_s=1,
              shrink_idle_s=2, payload={"extra_cost_s": 0.6},
              pool={"min": 1, "target": 1, "max": 2})
    try:
        rig.daq.run_imminent(RUN)
        assert wait_for(lambda: len(live(rig.db)) == 1, 60)
        rig.daq.start_run(RUN)
        for sequence in range(4):  # 12 slices of 0.6 s for one worker: too slow
            rig.daq.write_stf(RUN, sequence, utcnow())
        assert wait_for(lambda: len(rig.prompt.of("create_workflow_task")) == 2, 30)
        extra = rig.prompt.of("create_workflow_task")[1]["content"]["workflow"]
        assert (extra["name"], extra["content"]["target_worker_count"]) == (
            f"swf.{RUN:06d}.JLAB_EPIC_PROMPT.prompt.x1", 1)
        assert rig.prompt.of("adjust_worker")[0]["content"]["target_worker_count"] == 2
        assert wait_for(lambda: len(live(rig.db)) == 2, 60)
        assert wait_for(lambda: completed(rig.db) == 12, 60)
        # idle: the pool shrinks back to one by retiring a worker, whose job finishes
        assert wait_for(lambda: len(live(rig.db)) == 1, 30)
        [retired] = [w for w in records(rig.db, FastPathWorkerRecord) if w.status == "exited"]
        assert retired.detail.startswith("worker_retire: scaled down")
        rig.daq.end_run(RUN, 4)
        assert wait_for(lambda: not live(rig.db), 30)
        assert [p.wait(timeout=30) for p in rig.pilots.procs.values()] == [0, 0]
    finally:
        rig.close()


def test_an_idds_pool_needs_the_broker_and_a_queue():
    with pytest.raises(ConfigurationError, match=r"bus\.transport: stomp"):
        load_config(fastpath={"pool": {"provider": "idds"}})
    with pytest.raises(ConfigurationError, match=r"wfms\.panda\.queues\.E1_NOWHERE"):
        load_config(bus={"transport": "stomp"},
                    fastpath={"pool": {"provider": "idds", "idds": {"site": "E1_NOWHERE"}}})
