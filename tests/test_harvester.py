"""Harvester deployments: generated configs current, valid, and loaded by the real Harvester;
ePIC's plugins inside a real Harvester provisioning real pilots for the loopback PanDA server.

What runs for real: Harvester 0.7.5 (``.venv-harvester``, installed from the upstream source):
its ``QueueConfigMapper`` and ``PluginFactory`` on every generated E1/E2 queue, and its master
process with all agents against the loopback PanDA server (OIDC token), with the E1 queue
blocks our generator makes, ePIC's standing-pool plugins and this machine as the batch system
(``epic_harvester.local_batch``): each worker a real Pilot 3 in its own PID namespace, taking
its job from PanDA, running the reco payload, reporting back.

The standing pool's replenishment arithmetic is also driven below the way Harvester's worker
adjuster and submitter call it, with a stand-in WorkSpec carrying the real attribute names
(many cycles and deaths in milliseconds); the real Harvester run replaces a killed worker.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import random
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from epic_wfms.cli.main import cli
from epic_wfms.config import load_config
from epic_wfms.model import naming
from epic_wfms.model.stf_file import write_stf
from epic_wfms.monitor.app import create_app
from epic_wfms.sites import load_catalogue
from epic_wfms.sites.harvester import (
    KNOWN_PLUGINS,
    MANDATORY_BLOCKS,
    render,
    stale_files,
    validate_queueconfig,
)
from epic_wfms.sites.harvester_cfg import HarvesterCfgError, cfg_sections, merge_cfg
from epic_wfms.sites.standing_pool import write_pool_target
from epic_wfms.wfms.panda import taskparams
from epic_wfms.wfms.panda.client import PandaConnection, PandaSettings
from epic_wfms.wfms.panda.jobs import submit_stf_jobs
from loopback.harvester import LocalHarvester
from loopback.harvester.conformance import load_with_harvester
from loopback.panda import LocalPandaServer
from loopback.panda.pilot import TRANSFORMATION
from tests.conftest import wait_until

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "plugins" / "harvester"))
pool = importlib.import_module("epic_harvester.standing_pool")
QUEUE, PER_JOB_QUEUE = "BNL_EPIC_PROMPT", "JLAB_EPIC_PROMPT"


class WorkSpecStandIn:
    ST_submitted, ST_running, ST_finished, ST_failed = "submitted", "running", "finished", "failed"
    ST_ready, ST_cancelled, ST_idle, ST_missed = "ready", "cancelled", "idle", "missed"
    ST_pending = "pending"
    ATTRIBUTES = ("workerID", "status", "creationTime", "nCore", "minRamCount", "maxDiskCount",
                  "maxWalltime", "jobType", "resourceType", "pilotType", "workAttributes")

    def __init__(self) -> None:
        for name in self.ATTRIBUTES:
            setattr(self, name, None)

    def __setattr__(self, name, value):  # a typo in the plugin would be a silent bug in Harvester
        if name not in self.ATTRIBUTES:
            raise AttributeError(f"WorkSpec has no attribute {name}")
        object.__setattr__(self, name, value)


def test_generated_configs_are_current():
    stale = stale_files(load_catalogue(), REPO / "harvester_configs")
    assert not stale, f"regenerate with `epic-wfms sites harvester-config`: {stale}"


def test_generated_configs_validate_as_harvester_loads_them():
    catalogue = load_catalogue()
    paths = sorted((REPO / "harvester_configs").glob("*/panda_queueconfig.json"))
    assert len(paths) == len(catalogue.sites)
    batch_plugins = set()
    for path in paths:
        data = json.loads(path.read_text())
        assert validate_queueconfig(data) == [], path
        site = catalogue.site(path.parent.name)
        assert sorted(data) == sorted(q.name for q in site.queues)
        for name, block in data.items():
            assert set(MANDATORY_BLOCKS) <= set(block)
            batch_plugins.add(block["submitter"]["name"])
            queue = next(q for q in site.queues if q.name == name)
            assert block["walltimeLimit"] == int(queue.max_walltime_h * 3600)
            if queue.harvester.standing_pool:
                assert block["throttler"]["name"] == "StandingPoolThrottler"
                assert block["maxWorkers"] == queue.harvester.standing_pool
    assert {"HTCondorSubmitter", "SlurmSubmitter", "K8sSubmitter"} <= batch_plugins
    cfg = (REPO / "harvester_configs/E1_BNL/panda_harvester.cfg").read_text()
    assert "[qconf]" in cfg and " BNL_EPIC_PROMPT\n" in cfg


def test_validator_catches_what_harvester_would_reject():
    block = json.loads(render(load_catalogue(), ["E2_MIT"])["E2_MIT/panda_queueconfig.json"])
    del block["MIT_T2"]["sweeper"]
    block["MIT_T2"]["monitor"]["name"] = "CondorMonitor"
    block["MIT_T2"]["mapType"] = "Pull"
    k8s = json.loads(render(load_catalogue(), ["E2_CLOUD_GCP"])[
        "E2_CLOUD_GCP/panda_queueconfig.json"])
    del k8s["GCP_K8S"]["monitor"]["k8s_config_file"]
    block.update(k8s)
    problems = validate_queueconfig(block)
    assert "GCP_K8S.monitor: K8sMonitor needs 'k8s_config_file'" in problems
    assert any("missing mandatory plugin section 'sweeper'" in p for p in problems)
    assert any("unknown plugin pandaharvester.harvestermonitor.htcondor_monitor.CondorMonitor"
               in p for p in problems)
    assert any("mapType" in p for p in problems)


def test_stale_file_is_detected(tmp_path):
    catalogue = load_catalogue()
    for rel, text in render(catalogue).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert stale_files(catalogue, tmp_path) == []
    (tmp_path / "E1_JLAB/panda_queueconfig.json").write_text("{}")
    assert stale_files(catalogue, tmp_path) == ["E1_JLAB/panda_queueconfig.json"]


def _build(block: dict, queue: str, site: str, **extra):
    """What PluginFactory.get_plugin does with a queue-config block."""
    module = importlib.import_module(block["module"])
    args = {k: v for k, v in block.items() if k not in ("module", "name")}
    args.setdefault("queueName", queue)
    args.setdefault("siteName", site)
    return getattr(module, block["name"])(**args, **extra)


def test_plugin_methods_have_harvesters_signatures():
    maker = pool.StandingPoolWorkerMaker
    throttler = pool.StandingPoolThrottler
    assert list(inspect.signature(maker.make_worker).parameters) == [
        "self", "jobspec_list", "queue_config", "job_type", "resource_type",
        "prod_source_label"]
    assert inspect.signature(maker.make_worker).parameters["prod_source_label"].default == "ANY"
    assert list(inspect.signature(throttler.to_be_throttled).parameters) == [
        "self", "queue_config", "queue_config_mapper"]
    for name in ("get_num_jobs_per_worker", "get_num_workers_per_job"):
        assert list(inspect.signature(getattr(maker, name)).parameters) == ["self", "n_workers"]
    for name in ("num_ready_resources", "get_max_workers_per_job_in_total",
                 "get_max_workers_per_job_per_cycle"):
        assert list(inspect.signature(getattr(maker, name)).parameters) == ["self"]
    assert ("epic_harvester.standing_pool", "StandingPoolThrottler") in KNOWN_PLUGINS


class FakeBatch:
    """Workers in a batch system: submitted -> running; some die every cycle."""

    def __init__(self, rng: random.Random) -> None:
        self.workers: dict[int, str] = {}
        self.rng = rng

    def alive(self, queue_name: str, site_name: str) -> int:
        return sum(s in pool.ALIVE_STATUSES for s in self.workers.values())

    def cycle(self, deaths: int) -> None:
        running = [w for w, s in self.workers.items() if s == "running"]
        for worker in self.rng.sample(running, min(deaths, len(running))):
            self.workers[worker] = self.rng.choice(["failed", "finished", "missed"])
        for worker, status in self.workers.items():
            if status == "submitted":
                self.workers[worker] = "running"


def test_standing_pool_is_replenished_to_its_target(tmp_path):
    data = json.loads((REPO / "harvester_configs/E1_BNL/panda_queueconfig.json").read_text())
    qconf = data["BNL_EPIC_PROMPT"]
    target_file = tmp_path / "BNL_EPIC_PROMPT.json"
    batch = FakeBatch(random.Random(3))
    throttler = _build({**qconf["throttler"], "targetFile": str(target_file)}, "BNL_EPIC_PROMPT",
                       "BNL_EPIC_PROMPT", workerCounter=batch.alive)
    maker = _build({**qconf["workerMaker"], "targetFile": str(target_file)}, "BNL_EPIC_PROMPT",
                   "BNL_EPIC_PROMPT", workSpecFactory=WorkSpecStandIn)
    queue_config = SimpleNamespace(queueName="BNL_EPIC_PROMPT", siteName="BNL_EPIC_PROMPT",
                                   **{k: v for k, v in qconf.items() if not isinstance(v, dict)})
    made: list[WorkSpecStandIn] = []

    def harvester_cycle() -> str:
        """One worker-adjuster + submitter cycle, with Harvester's caps."""
        throttled, message = throttler.to_be_throttled(queue_config, queue_config_mapper=None)
        if throttled:
            return message
        n_queue = sum(s == "submitted" for s in batch.workers.values())
        n_alive = batch.alive("", "")
        n_new = min(queue_config.nQueueLimitWorker - n_queue,
                    queue_config.maxWorkers - n_alive, queue_config.maxNewWorkersPerCycle)
        for _ in range(max(n_new, 0)):
            spec = maker.make_worker([], queue_config, "managed", "MCORE")
            if spec is None:  # Harvester: a chunk not made (no jobs in pull mode)
                continue
            spec.workerID = len(made) + 1
            spec.status = WorkSpecStandIn.ST_submitted
            made.append(spec)
            batch.workers[spec.workerID] = spec.status
        return message

    assert "full: 0 alive >= target 0" in harvester_cycle()  # no run: no pool
    write_pool_target(target_file, 40, run_number=1001)  # run_imminent
    for i in range(30):
        harvester_cycle()
        assert batch.alive("", "") == 40, f"cycle {i}"
        batch.cycle(deaths=5)  # workers die: walltime, node failures, pre-emption
    assert len(made) > 40 + 100  # the dead were replaced
    spec = made[-1]
    assert (spec.nCore, spec.maxWalltime) == (qconf["workerMaker"]["nCore"], 72 * 3600)
    assert spec.workAttributes == {"epicPool": "BNL_EPIC_PROMPT", "epicRunNumber": 1001,
                                   "standing": True}
    write_pool_target(target_file, 500, run_number=1002)  # more than the queue allows
    for _ in range(3):
        harvester_cycle()
    assert batch.alive("", "") == qconf["throttler"]["maxPool"]
    write_pool_target(target_file, 0)  # end_run: nothing new is submitted
    before = len(made)
    batch.cycle(deaths=10)
    assert "pool full" in harvester_cycle() and len(made) == before


def test_pool_target_file_is_robust(tmp_path):
    path = tmp_path / "p.json"
    target = pool.PoolTarget(path, default=3)
    assert target.read() == 3  # no file yet: the static default
    write_pool_target(path, 12, run_number=7)
    assert target.read() == 12 and target.run_number == 7
    path.write_text("{half a json")
    assert target.read() == 12  # a broken file keeps the last good value
    with pytest.raises(ValueError, match="must be >= 0"):
        write_pool_target(path, -1)


def test_plan_pool_counts_alive_and_caps_per_cycle():
    plan = pool.plan_pool(10, ["running"] * 4 + ["submitted", "failed", "finished"],
                          max_new_per_cycle=3, previously_alive=8)
    assert (plan.alive, plan.to_submit, plan.excess, plan.replaced) == (5, 3, 0, 3)
    assert pool.plan_pool(2, ["running"] * 5).excess == 3


# ---- Harvester's own code reads what we generate ---------------------------------------------

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: site, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: harvester, user: {token: none}}]
contexts: [{name: site, context: {cluster: site, user: harvester, namespace: epic}}]
current-context: site
"""


def test_harvester_loads_every_generated_queue_and_builds_its_plugins(tmp_path):
    """Every E1 and E2 queue block, as written to harvester_configs/, through Harvester's own
    QueueConfigMapper (with every site's cfg fragment merged into Harvester's template), and
    every plugin section through its PluginFactory. The only site file a constructor reads
    is a Kubernetes queue's kubeconfig: a syntactically valid one stands in (nothing is
    contacted)."""
    catalogue = load_catalogue()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    generated, fragments = {}, []
    for site_dir in sorted((REPO / "harvester_configs").glob("E*_*")):
        generated.update(json.loads((site_dir / "panda_queueconfig.json").read_text()))
        fragments.append((site_dir / "panda_harvester.cfg").read_text())
    expected = {q.name for _, q in catalogue.queues()}
    assert set(generated) == expected and len(expected) >= 20
    loadable = json.loads(json.dumps(generated))
    for name in loadable:
        for section in loadable[name].values():
            if isinstance(section, dict) and "k8s_config_file" in section:
                section["k8s_config_file"] = str(kubeconfig)
    loaded = load_with_harvester(loadable, tmp_path / "harvester", tuple(fragments))
    assert loaded.mapper_log == []  # no queue dropped, no validation warning
    assert set(loaded.queues) == set(loaded.active) == expected
    assert loaded.broken_plugins == {}
    for name, block in generated.items():
        kept = loaded.queues[name]
        assert kept["mapType"] == block["mapType"] and kept["truePilot"] == block["truePilot"]
        assert kept["maxWorkers"] == block["maxWorkers"]
        assert kept["plugins"] == {key: [block[key]["module"], block[key]["name"]]
                                   for key in (*MANDATORY_BLOCKS, "throttler") if key in block}
    base = "pandaharvester.harvesterworkermaker.base_worker_maker.BaseWorkerMaker"
    assert base in loaded.bases["StandingPoolWorkerMaker"]
    assert "pandaharvester.harvestercore.plugin_base.PluginBase" in loaded.bases[
        "StandingPoolThrottler"]


def test_a_queue_harvester_cannot_load_is_reported(tmp_path):
    block = json.loads(render(load_catalogue(), ["E2_MIT"])["E2_MIT/panda_queueconfig.json"])
    block["MIT_T2"]["monitor"]["name"] = "CondorMonitor"  # no such class in Harvester
    loaded = load_with_harvester(block, tmp_path)
    assert "MIT_T2" not in loaded.queues
    assert any("Omitted MIT_T2" in line for line in loaded.mapper_log), loaded.mapper_log


def test_cfg_fragment_merges_as_harvester_reads_it():
    template = "[master]\n# comment\nuname = FIXME\nharvester_id = FIXME\n\n[qconf]\n" \
               "queueList =\n FIXME_1\n FIXME_2\nresolverModule = x\n"
    fragment = render(load_catalogue(), ["E1_BNL"])["E1_BNL/panda_harvester.cfg"]
    merged = cfg_sections(merge_cfg(template, fragment, {"qconf": {"resolverModule": None}}))
    assert merged["master"] == {"uname": "FIXME", "harvester_id": "epic-e1-bnl"}
    assert merged["qconf"]["queueList"].split() == ["BNL_EPIC_PROMPT", "BNL_PROD", "BNL_ANALY",
                                                    "BNL_GPU"]
    assert "resolverModule" not in merged["qconf"] and "checkInterval" in merged["qconf"]
    with pytest.raises(HarvesterCfgError, match=r"not a valid panda_harvester\.cfg"):
        merge_cfg(template, "queueList = no section")


def test_merge_into_writes_the_site_fragment_into_an_admins_cfg(tmp_path):
    cfg = tmp_path / "panda_harvester.cfg"
    cfg.write_text("[master]\nuname = atlpan\nharvester_id = FIXME\n[db]\nengine = sqlite\n")
    out = CliRunner().invoke(cli, ["sites", "harvester-config", "E1_JLAB", "--out",
                                   str(REPO / "harvester_configs"), "--merge-into", str(cfg)])
    assert out.exit_code == 0, out.output
    merged = cfg_sections(cfg.read_text())
    assert merged["master"] == {"uname": "atlpan", "harvester_id": "epic-e1-jlab"}
    assert merged["db"] == {"engine": "sqlite"} and "JLAB_EPIC_PROMPT" in merged["qconf"][
        "queueList"]
    out = CliRunner().invoke(cli, ["sites", "harvester-config", "--merge-into", str(cfg)])
    assert out.exit_code != 0 and "needs the SITE" in out.output


# ---- a real Harvester provisions real pilots for the loopback PanDA server -------------------

_runs = iter(range(700100, 700999))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The loopback PanDA server and a real Harvester serving BNL_EPIC_PROMPT with a standing
    pool (target 0 until jobs are there) and JLAB_EPIC_PROMPT with a worker per job."""
    server = LocalPandaServer(tmp_path_factory.mktemp("harvester-panda")).start()
    harvester = LocalHarvester(server, tmp_path_factory.mktemp("harvester"),
                               {QUEUE: 0, PER_JOB_QUEUE: None}, max_workers=2)
    try:
        harvester.start()
        yield server, harvester
    finally:
        harvester.stop()
        server.stop()


@pytest.fixture(scope="module")
def panda(stack) -> PandaConnection:
    who = stack[0].identity("Epic Production", production=True)
    return PandaConnection(PandaSettings(stack[0].url, who.token, who.auth_vo))


@pytest.fixture(scope="module")
def activated(stack, panda, tmp_path_factory) -> dict[str, dict[int, str]]:
    """Two jobs at the standing pool's queue and one at the worker-per-job queue, activated
    together (their pilots run side by side); then the pool's target is raised to 1, as
    epic-wfms does at run_imminent. PanDA queue -> {PandaID: STF}."""
    stf_dir = tmp_path_factory.mktemp("stfs")
    jobs = {QUEUE: submit_prompt_jobs(stack, panda, QUEUE, "E1_BNL", 2, stf_dir)}
    # Harvester has cycled meanwhile: no job at the per-job queue, no pilot there
    assert stack[1].workers(PER_JOB_QUEUE) == []
    jobs[PER_JOB_QUEUE] = submit_prompt_jobs(stack, panda, PER_JOB_QUEUE, "E1_JLAB", 1, stf_dir)
    stack[1].set_pool_target(QUEUE, 1)
    return jobs


def submit_prompt_jobs(stack, panda, queue: str, site: str, n: int, stf_dir: Path
                       ) -> dict[int, str]:
    """A prompt task at ``queue`` and one job per new STF: PandaID -> STF name."""
    server, harvester = stack
    run = next(_runs)
    params = taskparams.prompt_task(run, site, taskparams.TaskOptions(
        site=queue, container_image=None, extra={"transPath": TRANSFORMATION}))
    task_id = panda.submit_task(params)
    server.refine_tasks()
    stfs = []
    for seq in range(1, n + 1):
        name = naming.stf_filename(run, seq)
        path = stf_dir / name
        write_stf(path, {"run_number": run, "sequence": seq}, 4, 30, random.Random(seq))
        harvester.stage(queue, {name: path})
        stfs.append(name)
    ids = submit_stf_jobs(panda, task_id, params, stfs, queue)
    return dict(zip(ids, stfs, strict=True))


def panda_rows(server: LocalPandaServer, sql: str, *args) -> list[tuple]:
    with psycopg.connect(host=server.pg_host, port=server.pg_port, user=server.pg_admin,
                         dbname=server.db_name) as conn:
        return conn.execute(sql, args).fetchall()


def finish_in_panda(server, panda, jobs: dict[int, str]) -> None:
    """Wait for the pilots' final reports (``holding``), run the server's Adder: finished."""
    def reported():
        states = {j.jobStatus for j in panda.jobs(list(jobs))}
        return states <= {"holding", "finished", "failed", "cancelled"} and states
    states = wait_until(reported, 300, f"pilots report jobs {sorted(jobs)}")
    assert states <= {"holding", "finished"}, states  # an Adder cycle may have run already
    server.add_outputs()
    done = panda.jobs(list(jobs))
    assert {(j.jobStatus, int(j.transExitCode)) for j in done} == {("finished", 0)}


def test_pilots_of_the_standing_pool_run_the_activated_jobs(stack, panda, activated):
    server, harvester = stack
    jobs = activated[QUEUE]
    finish_in_panda(server, panda, jobs)
    # Harvester's database: one standing worker (the pool's target), which ran both jobs
    workers = wait_until(lambda: [w for w in harvester.workers(QUEUE)
                                  if set(jobs) <= set(w.panda_ids)], 60,
                         "Harvester records the jobs of its worker")
    [worker] = workers
    assert worker.status == "running" and worker.batch_id
    assert [w.worker_id for w in harvester.workers(QUEUE)] == [worker.worker_id]
    # PanDA: the worker as Harvester reported it, linked to the jobs its pilot fetched
    wait_until(lambda: panda_rows(
        server, "SELECT workerid, status, computingsite FROM doma_panda.harvester_workers "
        "WHERE harvesterid = %s AND workerid = %s", harvester.harvester_id, worker.worker_id
    ) == [(worker.worker_id, "running", QUEUE)], 60, "Harvester reports its worker to PanDA")
    links = panda_rows(server, "SELECT pandaid, workerid FROM "
                       "doma_panda.harvester_rel_jobs_workers WHERE harvesterid = %s",
                       harvester.harvester_id)
    assert {p: w for p, w in links if p in jobs} == dict.fromkeys(jobs, worker.worker_id)
    # the reco payload ran on each STF
    outputs = harvester.outputs(worker.worker_id)
    for stf in jobs.values():
        result = json.loads(outputs[naming.reco_output_filename(stf)].read_text())
        assert result["stf"] == stf and result["n_tf"] == 4


def test_a_worker_per_job_runs_its_job_and_ends(stack, panda, activated):
    server, harvester = stack
    jobs = activated[PER_JOB_QUEUE]
    finish_in_panda(server, panda, jobs)
    # the worker whose pilot ran the job ends with it (timefloor 0: one job per pilot)
    [worker] = wait_until(lambda: [w for w in harvester.workers(PER_JOB_QUEUE)
                                   if w.status == "finished" and w.panda_ids], 120,
                          "the pilot that ran the job ends")
    assert worker.panda_ids == tuple(jobs) and worker.exit_code == 0
    # workers only for the job: one ran it (a second can start if the first runs before its
    # pilot fetched the job: Harvester counts activated jobs against queued workers only)
    made = harvester.workers(PER_JOB_QUEUE)
    assert len(made) <= 2 and [w.worker_id for w in made if w.panda_ids] == [worker.worker_id]


def test_a_killed_pilot_is_reported_failed_and_replaced(stack, activated, tmp_path):
    server, harvester = stack
    [worker] = [w for w in harvester.workers(QUEUE) if w.alive]
    pilot = harvester.pilot_pid(worker.worker_id)
    assert pilot is not None
    os.kill(pilot, signal.SIGKILL)
    [failed] = wait_until(lambda: [w for w in harvester.workers(QUEUE)
                                   if w.worker_id == worker.worker_id and w.status == "failed"],
                          120, "Harvester reports the worker failed")
    assert (failed.exit_code, failed.native_status) == (137, "killed by signal 9")
    assert harvester.worker_processes(worker.worker_id) == []  # its namespace went with it
    [replacement] = wait_until(lambda: [w for w in harvester.workers(QUEUE) if w.alive], 120,
                               "a replacement worker is submitted")
    assert replacement.worker_id > worker.worker_id
    wait_until(lambda: panda_rows(
        server, "SELECT status FROM doma_panda.harvester_workers WHERE harvesterid = %s AND "
        "workerid = %s", harvester.harvester_id, worker.worker_id) == [("failed",)], 60,
        "Harvester reports the failure to PanDA")
    out = CliRunner().invoke(cli, ["sites", "workers", "--harvester-db", str(harvester.db_path),
                                   "--json"])
    assert out.exit_code == 0, out.output
    counts = json.loads(out.output)
    assert counts[QUEUE]["failed"] == 1 and counts[PER_JOB_QUEUE]["finished"] >= 1
    assert counts[QUEUE].get("running", 0) + counts[QUEUE].get("submitted", 0) == 1
    # the monitor's page of Harvester's workers
    config = load_config(data_dir=tmp_path / "wfms",
                         monitor={"port": 0, "harvester_db": str(harvester.db_path)})
    with TestClient(create_app(config)) as client:
        shown = client.get("/harvester?json").json()
        html = client.get("/harvester").text
    assert {q["queue"]: q["alive"] for q in shown["queues"]}[QUEUE] == 1
    assert [w["exit_code"] for w in shown["workers"] if w["worker_id"] == worker.worker_id] == [
        137]
    assert "pilot killed by signal 9" in html and QUEUE in html
