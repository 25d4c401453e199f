"""The PanDA backend against a real panda-server 1.0.4 on loopback (PostgreSQL, OIDC tokens).

What runs for real: panda-client -> PanDA's REST API -> its TaskBuffer on PostgreSQL, and
JEDI's task refinement (getTasksToRefine_JEDI, TaskRefinerBase through our EpicTaskRefiner,
registerTaskInOneShot_JEDI). Here jobs for a task's STFs are built as panda-client JobSpecs and
submitted with submitJobs (PandaExecutor's path); JEDI generating them from the STFs in Rucio,
and a real pilot running one, are in test_panda_jedi.py.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from epic_wfms.cli.main import cli
from epic_wfms.model import naming
from epic_wfms.store.database import Database
from epic_wfms.store.schema import (
    JobRecord,
    PandaJobRecord,
    PandaTaskRecord,
    RunRecord,
    StfRecord,
)
from epic_wfms.wfms.panda import operations, taskparams
from epic_wfms.wfms.panda.client import PandaConnection, PandaSettings
from epic_wfms.wfms.panda.errors import PandaError, TaskParamsError
from epic_wfms.wfms.panda.jobs import kill_jobs, submit_stf_jobs
from epic_wfms.wfms.panda.readback import sync_task
from epic_wfms.wfms.panda.submit import submit_tasks
from loopback.panda import LocalPandaServer
from loopback.panda.oidc import LoopbackIssuer
from tests.conftest import wait_for

QUEUE = "BNL_EPIC_PROMPT"


@pytest.fixture(scope="session")
def panda_server(tmp_path_factory) -> LocalPandaServer:
    server = LocalPandaServer(tmp_path_factory.mktemp("panda-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def panda(panda_server) -> PandaConnection:
    who = panda_server.identity("Epic Production", production=True)
    return PandaConnection(PandaSettings(panda_server.url, who.token, who.auth_vo))


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'store.sqlite'}")
    database.create_schema()
    yield database
    database.dispose()


_runs = iter(range(100100, 100999))


@pytest.fixture
def run_number() -> int:
    return next(_runs)  # one session-wide server: task names must not repeat


def add_run_with_stfs(db: Database, run: int, n: int) -> list[str]:
    now = datetime.now(UTC)
    names = [naming.stf_filename(run, seq) for seq in range(1, n + 1)]
    with db.session() as s:
        s.add(RunRecord(number=run, run_type="physics", detector_config="test", status="open"))
        s.flush()
        for seq, name in enumerate(names, start=1):
            s.add(StfRecord(filename=name, run_number=run, sequence=seq, first_tf_time=now,
                            last_tf_time=now, tf_count=10, size_bytes=1000, adler32="00000001",
                            state="run", substate="physics", available_at=now,
                            validation="ok", site="E1_BNL"))
    return names


def test_prompt_task_is_accepted_refined_by_jedi_and_read_back(panda, panda_server, db,
                                                               run_number):
    params = taskparams.prompt_task(run_number, "E1_BNL")
    [record] = submit_tasks([params], panda, db)
    assert record.kind == "prompt" and record.run_number == run_number
    # the server stored exactly our dictionary
    stored = panda.task_params(record.jedi_task_id)
    assert stored["taskName"] == params["taskName"]
    assert stored["jobParameters"] == params["jobParameters"]
    assert stored["runUntilClosed"] is True
    # JEDI's refinement (with the ePIC refiner) accepts it and registers its datasets
    refined = {r["jediTaskID"]: r for r in panda_server.refine_tasks()}
    assert refined[record.jedi_task_id]["status"] == "defined", refined
    details = panda.task_details(record.jedi_task_id)
    assert details["inDS"] == f"epic:swf.{run_number:06d}.E1_BNL"
    assert f"epic:swf.{run_number:06d}.E1_BNL.reco" in details["outDS"].split(",")
    snapshot = sync_task(panda, db, record.jedi_task_id)
    assert snapshot.status == panda.task_status(record.jedi_task_id) == "defined"
    with db.session() as s:
        assert s.get(PandaTaskRecord, record.jedi_task_id).status == "defined"


def test_merge_task_is_refined(panda, panda_server, db, run_number):
    [record] = submit_tasks([taskparams.merge_task(run_number, "E1_JLAB")], panda, db)
    refined = {r["jediTaskID"]: r for r in panda_server.refine_tasks()}
    assert refined[record.jedi_task_id]["status"] == "defined"
    assert panda.task_details(record.jedi_task_id)["inDS"] == (
        f"epic:swf.{run_number:06d}.E1_JLAB.reco")


def test_jobs_and_their_stfs_are_in_our_store_and_cli_with_pandas_ids(panda, panda_server, db,
                                                                      run_number, tmp_path):
    stfs = add_run_with_stfs(db, run_number, 3)
    params = taskparams.prompt_task(run_number, "E1_BNL")
    [task] = submit_tasks([params], panda, db)
    panda_server.refine_tasks()
    panda_ids = submit_stf_jobs(panda, task.jedi_task_id, params, stfs, QUEUE)
    assert len(panda_ids) == 3
    snapshot = sync_task(panda, db, task.jedi_task_id)
    assert sorted(snapshot.jobs) == sorted(panda_ids) == sorted(panda.job_ids(task.jedi_task_id))
    assert [snapshot.stfs[i] for i in panda_ids] == stfs
    with db.session() as s:
        rows = {r.panda_id: r for r in s.query(PandaJobRecord).all()}
        assert {rows[i].stf_filename for i in panda_ids} == set(stfs)
        assert all(rows[i].status == snapshot.jobs[i] for i in panda_ids)
    # no pilot takes them: they wait at the queue, as PanDA shows
    with db.session() as s:
        errors = [s.get(PandaJobRecord, i).error for i in panda_ids]
    assert set(snapshot.jobs.values()) <= {"defined", "assigned", "activated"}, errors
    # killing a job goes through PanDA and shows on the next read-back
    kill_jobs(panda, panda_ids[:1])  # the server ends the job on its own time (under load: s)
    assert wait_for(lambda: sync_task(panda, db, task.jedi_task_id).jobs[panda_ids[0]]
                    in ("cancelled", "failed"), 60)  # PanDA's choice per job state
    after = sync_task(panda, db, task.jedi_task_id).jobs
    with db.session() as s:
        errors = [s.get(PandaJobRecord, i).error for i in panda_ids]
    assert after[panda_ids[1]] not in ("cancelled", "failed"), errors
    with db.session() as s:
        assert "killed by" in s.get(PandaJobRecord, panda_ids[0]).error
    out = CliRunner().invoke(cli, ["panda", "tasks", "--db", db.url]).output
    assert str(task.jedi_task_id) in out and "defined" in out
    out = CliRunner().invoke(cli, ["panda", "jobs", str(task.jedi_task_id), "--db", db.url]).output
    assert all(str(i) in out for i in panda_ids) and stfs[1] in out


def test_a_task_is_submitted_once(panda, db, run_number):
    params = taskparams.prompt_task(run_number, "E1_BNL")
    [first] = submit_tasks([params], panda, db)
    with pytest.raises(TaskParamsError, match=f"jediTaskID {first.jedi_task_id}"):
        submit_tasks([params], panda, db)
    # a user's analysis task with uniqueTaskName: PanDA's own duplicate check refuses it
    user = taskparams.prompt_task(run_number, "E1_JLAB", taskparams.TaskOptions(
        activity="user", extra={"uniqueTaskName": True}))
    panda.submit_task(user)
    with pytest.raises(PandaError, match="duplicated"):
        panda.submit_task(user)


def test_bad_dictionaries_are_refused_before_anything_is_submitted(panda, db, run_number):
    good = taskparams.prompt_task(run_number, "E1_BNL")
    bad = copy.deepcopy(good)
    bad["taskName"] += ".bad"
    del bad["architecture"]
    with pytest.raises(TaskParamsError, match="architecture"):
        submit_tasks([good, bad], panda, db)
    with db.session() as s:
        assert s.query(PandaTaskRecord).count() == 0
    with pytest.raises(TaskParamsError, match="activity"):
        taskparams.prompt_task(run_number, "E1_BNL", taskparams.TaskOptions(activity="fun"))


def test_jedi_breaks_a_task_its_refiner_cannot_read(panda, panda_server, run_number):
    params = taskparams.prompt_task(run_number, "E1_JLAB")
    del params["transUses"]  # bypass our validation: JEDI's own code must refuse it
    task_id = panda.submit_task(params)
    refined = {r["jediTaskID"]: r for r in panda_server.refine_tasks()}
    assert refined[task_id]["status"] == "tobroken"
    assert "transUses" in refined[task_id]["error"]


def test_priority_cloning_kill_and_retry_through_the_client(panda, panda_server, db,
                                                            run_number):
    [task] = submit_tasks([taskparams.prompt_task(run_number, "E1_BNL")], panda, db)
    panda_server.refine_tasks()
    assert "1 tasks changed" in operations.set_priority(panda, db, task.jedi_task_id, 950)
    with db.session() as s:
        assert s.get(PandaTaskRecord, task.jedi_task_id).priority == 950
    operations.enable_cloning(panda, task.jedi_task_id, "runonce", 2)
    with pytest.raises(PandaError, match="retry"):  # a defined task has nothing to retry
        operations.retry(panda, task.jedi_task_id)
    operations.kill(panda, task.jedi_task_id)  # accepted: JEDI's TaskCommando acts on it


def test_production_actions_need_the_production_role(panda_server, db, run_number):
    user = panda_server.identity("Epic Shifter", production=False)
    shifter = PandaConnection(PandaSettings(panda_server.url, user.token, user.auth_vo))
    with pytest.raises(PandaError, match="production"):
        operations.set_priority(shifter, None, 1, 990)
    with pytest.raises(PandaError, match="missing production"):
        submit_stf_jobs(shifter, 1, taskparams.prompt_task(run_number, "E1_BNL"),
                        [naming.stf_filename(run_number, 1)], QUEUE)


def test_a_token_from_another_issuer_is_refused(panda_server, run_number):
    forger = LoopbackIssuer().start()
    try:
        token = forger.token("Mallory", ["epic", "epic/production"])
    finally:
        forger.stop()
    conn = PandaConnection(PandaSettings(panda_server.url, token, "epic.production"))
    with pytest.raises(PandaError):
        conn.submit_task(taskparams.prompt_task(run_number, "E1_BNL"))


def test_the_panda_backend_is_chosen_by_configuration(panda_server, tmp_path, run_number):
    from epic_wfms.config import load_config
    from epic_wfms.errors import ConfigurationError
    from epic_wfms.installation import build_panda_connection

    assert build_panda_connection(load_config()) is None  # embedded by default
    with pytest.raises(ConfigurationError, match="token_file"):
        load_config(wfms={"backend": "panda", "panda": {"url": panda_server.url}})
    who = panda_server.identity()
    token = tmp_path / "token"
    token.write_text(who.token)
    config = load_config(wfms={"backend": "panda", "panda": {
        "url": panda_server.url, "token_file": str(token), "auth_vo": who.auth_vo}})
    conn = build_panda_connection(config)
    task_id = conn.submit_task(taskparams.prompt_task(run_number, "E1_BNL"))
    assert conn.task_params(task_id)["vo"] == "epic"


# ---- the execution interface: embedded pool and PanDA pass the same contract ----------------

@pytest.fixture(params=["embedded", "panda"])
def executor(request, db, panda, run_number):
    from epic_wfms.wfms.embedded import LocalWorkerPool
    from epic_wfms.wfms.panda.executor import PandaExecutor

    if request.param == "embedded":
        ex = LocalWorkerPool(db, {"E1_BNL": 1})
    else:
        task_id = panda.submit_task(taskparams.prompt_task(run_number, "E1_BNL"))
        ex = PandaExecutor(db, panda, {"E1_BNL": QUEUE}, task_id)
    yield request.param, ex
    ex.shutdown()


def test_execution_contract(executor, db, tmp_path):
    import threading

    from epic_wfms.wfms import JobSpec, JobStatus

    kind, ex = executor
    reco = tmp_path / "a.reco.json"
    reco.write_text('{"stf": "a.stf", "n_tf": 1, "n_hits": 2, "adc_sum": 3, '
                    '"hits_per_detector": {"ecal": 2}}')

    def spec(n: int) -> JobSpec:
        return JobSpec("merge", "E1_BNL", "epic_wfms.wfms.payloads.merge",
                       ["--output", str(tmp_path / f"out{n}.json"), str(reco)],
                       inputs=[reco.name], output=f"out{n}.json")

    with pytest.raises(ValueError, match="unknown site 'CERN'"):
        ex.submit(JobSpec("reco", "CERN", "x", [], [], "y"), lambda r: None)
    assert ex.sites() == ["E1_BNL"]
    results, all_done = [], threading.Event()

    def done(result):
        results.append(result)
        if len(results) == 2:
            all_done.set()

    ex.set_online("E1_BNL", False)  # offline: jobs wait, activated
    ids = [ex.submit(spec(1), done), ex.submit(spec(2), done)]
    assert len(set(ids)) == 2 and ex.backlog("E1_BNL") == 2 and not results
    ex.set_online("E1_BNL", True)
    if kind == "embedded":
        assert all_done.wait(60)
        assert {r.status for r in results} == {JobStatus.FINISHED}
    else:  # as far as the server goes: no pilot runs them, so they wait at the queue
        ex.poll()
        panda_ids = [ex.panda_id(i) for i in ids]
        assert not results, results
        assert ex.backlog("E1_BNL") == 2
        assert {j.jobStatus for j in ex.connection.jobs(panda_ids)} <= {"defined", "activated",
                                                               "assigned"}
        assert {ex.status(i) for i in ids} == {JobStatus.ACTIVATED}
        kill_jobs(ex.connection, panda_ids)
        assert ex.poll() == 2 and all_done.is_set()
        assert {r.status for r in results} == {JobStatus.CANCELLED}
        assert {r.extra["panda_id"] for r in results} == set(panda_ids)
    # each attempt is one job record, whichever backend ran it; PanDA's id beside ours
    assert {r.job_id for r in results} == set(ids)
    with db.session() as session:
        records = {r.id: r for r in session.scalars(select(JobRecord))}
    assert set(records) == set(ids)
    assert {r.status for r in records.values()} == {r.status.value for r in results}
    if kind == "panda":
        assert {r.panda_id for r in records.values()} == set(panda_ids)
        assert all("merge" in r.command for r in records.values())
    assert ex.backlog("E1_BNL") == 0


def test_template_submit_sends_the_rendered_tasks_to_panda(panda_server, panda, tmp_path,
                                                           run_number):
    """`epic-wfms template submit --target panda` with `wfms.backend: panda`: the JEDI task
    parameters rendered from the template arrive at the server as they were rendered."""
    who = panda_server.identity("Epic Production", production=True)
    token = tmp_path / "token"
    token.write_text(who.token)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        f"wfms: {{backend: panda, panda: {{url: '{panda_server.url}', "
        f"token_file: '{token}', auth_vo: {who.auth_vo}}}}}\n")
    args = ["template", "submit", "reprocessing", "--runs", f"{run_number},{run_number + 1}",
            "--target", "panda", "--json", "--config", str(config)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    submitted = json.loads(result.output)
    rendered = submitted["spec"]["tasks"]
    tasks = submitted["response"]
    assert submitted["status"] == "submitted" and len(tasks) == len(rendered) > 0
    for params, task in zip(rendered, tasks, strict=True):
        stored = panda.task_params(task["jedi_task_id"])
        assert stored["taskName"] == params["taskName"] == task["task_name"]
        assert stored["vo"] == "epic" and stored["prodSourceLabel"] == params["prodSourceLabel"]
    again = CliRunner().invoke(cli, args)  # the same rendered tasks are not submitted twice
    assert again.exit_code != 0 and "already" in again.output
