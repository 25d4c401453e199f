"""The iDDS backend against a real idds-server 2.6.21 on loopback (PostgreSQL, OIDC tokens).

What runs for real: idds-client -> iDDS's REST app (gunicorn) -> its ORM on PostgreSQL, its
OIDC token check against a loopback issuer, and iDDS's own daemon process
(``idds.agents.main``) with Clerk, Transformer, the Carrier's Submitter and the prompt
service's Transceiver, which turn our requests into transforms and processings, evaluate our
works' conditions, submit the ready works' JEDI tasks to the real local PanDA server, execute
abort/close/retry commands, and take the fast path's worker-pool requests over STOMP.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import stomp
from click.testing import CliRunner

from epic_wfms.bus.stomp import StompSettings
from epic_wfms.cli.main import cli
from epic_wfms.config import load_config
from epic_wfms.ddm.interface import DID, FileSpec
from epic_wfms.ddm.rucio.backend import RucioDDM
from epic_wfms.model.checksum import file_adler32
from epic_wfms.monitor.auth import Authenticator, AuthError
from epic_wfms.wfms.idds import workflows
from epic_wfms.wfms.idds.client import IddsConnection, IddsSettings
from epic_wfms.wfms.idds.prompt_pool import RestPromptChannel, StompPromptChannel, WorkerPool
from epic_wfms.wfms.idds.submit import IddsError, serialise, submit_workflow
from epic_wfms.wfms.idds.works import EpicPandaWork
from epic_wfms.wfms.panda import taskparams
from epic_wfms.wfms.panda.client import PandaConnection, PandaSettings
from epic_wfms.wfms.panda.errors import PandaError
from loopback.common import free_port
from loopback.idds import LocalIddsServer
from loopback.panda import LocalPandaServer
from loopback.panda.oidc import LoopbackIssuer
from loopback.rucio.server import add_scope

OWNER = "Olga Operator"
STOMP_VHOST = "127.0.0.1"  # iDDS's broker code connects with the host name as virtual host


@pytest.fixture(scope="module")
def oidc_issuer() -> LoopbackIssuer:
    """One OIDC issuer for PanDA, iDDS and the monitor, as IAM is for all of them."""
    issuer = LoopbackIssuer().start()
    yield issuer
    issuer.stop()


@pytest.fixture(scope="module")
def panda_for_idds(tmp_path_factory, oidc_issuer) -> LocalPandaServer:
    """The real local PanDA server, where iDDS's prompt service submits the pool's task."""
    server = LocalPandaServer(tmp_path_factory.mktemp("panda-for-idds"),
                              issuer=oidc_issuer).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def idds_server(tmp_path_factory, panda_for_idds, oidc_issuer, rucio_server) -> LocalIddsServer:
    tag = uuid.uuid4().hex[:8]
    server = LocalIddsServer(tmp_path_factory.mktemp("idds-server"),
                             prompt_topic=f"/topic/panda.workflow.{tag}",
                             reply_topic=f"/topic/panda.workers.{tag}", issuer=oidc_issuer)
    server.start()
    # iDDS's daemons, one process as in production; their first cycle starts after ~10 s.
    # panda-client in there talks to the local PanDA server with a production-role token,
    # rucio-clients to the loopback Rucio server (the works' input datasets)
    who = panda_for_idds.identity("iDDS Service", production=True)
    server.start_daemons(["clerk", "transformer", "submitter", "poller", "finisher",
                          "transceiver"],
                         env={**server.panda_env(panda_for_idds.url, who.token, who.auth_vo),
                              **server.rucio_env(rucio_server.server.config_file)})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def idds(idds_server) -> IddsConnection:
    return IddsConnection(IddsSettings(idds_server.url, idds_server.token(OWNER), retries=1))


_runs = iter(range(200100, 200999))


def _tasks() -> tuple[dict, dict]:
    run = next(_runs)
    return taskparams.prompt_task(run, "E1_BNL"), taskparams.merge_task(run, "E1_BNL")


def _calibration() -> tuple:
    calib, reco = _tasks()
    calib = {**calib, "taskName": calib["taskName"] + ".calib"}
    return workflows.calibration_loop(calib, reco, tolerance=0.05), calib, reco


def _stored(server: LocalIddsServer, column: str, table: str, key: str, value: int) -> dict:
    """A JSON column of iDDS's own tables (it keeps JSON as text), decoded."""
    (stored,) = server.query(f"SELECT {column} FROM doma_idds.{table} WHERE {key} = %s",
                             value)[0]
    while isinstance(stored, str):
        stored = json.loads(stored)
    return stored


def _normalised(workflow) -> dict:
    """iDDS's JSON of a workflow, without the empty fields its metadata fills in on access."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()
                    if v not in (None, {}) and k != "_loading"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return strip(json.loads(serialise(workflow)))


def test_our_workflows_are_stored_by_idds_and_read_back_as_sent(idds_server, idds):
    loop, calib, reco = _calibration()
    up, down = _tasks()
    validated = workflows.process_when_validated(up, down)
    started = time.perf_counter()
    ids = [submit_workflow(wf, idds_server.url, idds_server.auth(OWNER), retries=1)
           for wf in (loop, validated)]
    per_request = (time.perf_counter() - started) / 2
    assert ids[1] > ids[0] > 0 and per_request < 5
    for request_id, sent in zip(ids, (loop, validated), strict=True):
        stored = idds.request(request_id)
        assert (stored.request_id, stored.name) == (request_id, sent.name)
        assert stored.status in ("New", "Transforming")  # the Clerk may have taken it already
        assert stored.username == OWNER  # iDDS takes the owner from the token, not from us
        assert _normalised(stored.workflow) == _normalised(sent)
    works = {w.task_name: w for w in idds.request(ids[0]).workflow.get_all_works()}
    assert isinstance(works[calib["taskName"]], EpicPandaWork)
    assert works[calib["taskName"]].task_parameters == calib
    assert works[calib["taskName"]].tolerance == 0.05 and works[reco["taskName"]].tolerance is None


def test_hpo_request_becomes_an_idds_hpo_workflow(idds_server, idds):
    training, _ = _tasks()
    space = {"lr": {"type": "float", "min": 1e-4, "max": 1e-1}, "layers": {"type": "int",
                                                                          "min": 2, "max": 6}}
    hpo = workflows.hyperparameter_optimisation(training, space, max_points=8,
                                                points_per_iteration=2)
    request_id = idds.submit_hpo(hpo)
    stored = idds.request(request_id, with_workflow=False)  # ATLASHPOWork is idds-atlas's
    # iDDS names an HPO request after its HPO work's collection (``hpo.<timestamp>``)
    assert stored.name.startswith("hpo.") and stored.status in ("New", "Transforming")
    # iDDS's REST layer converted it: one HPO work carrying our search space
    text = json.dumps(_stored(idds_server, "request_metadata", "requests", "request_id",
                              request_id))
    assert "ATLASHPOWork" in text and '"max_points": 8' in text
    assert '"opt_space": {"lr": {"type": "float", "min": 0.0001, "max": 0.1}' in text


def test_bad_input_gets_clear_errors(idds_server, idds):
    with pytest.raises(IddsError, match="has no request 987654"):
        idds.request(987654)
    with pytest.raises(IddsError, match=r"refused to abort request 987654.*No match requests"):
        idds.abort(987654)
    loop, _, _ = _calibration()
    started = time.monotonic()
    with pytest.raises(IddsError, match=r"(?s)did not take.*ConnectionError.*fix: check that iDDS"):
        submit_workflow(loop, f"http://127.0.0.1:{free_port()}", idds_server.auth(), retries=1)
    assert time.monotonic() - started < 10
    stranger = LoopbackIssuer(client_id="epic-wfms").start()  # same audience, other issuer
    try:
        forged = IddsConnection(IddsSettings(idds_server.url, stranger.token(OWNER, ["epic"]),
                                             retries=1))
        with pytest.raises(IddsError, match="Failed to verify oidc token"):
            forged.submit(loop)
    finally:
        stranger.stop()
    other_vo = IddsConnection(IddsSettings(idds_server.url, idds_server.token(OWNER),
                                           vo="atlas", retries=1))
    with pytest.raises(IddsError, match="Failed to verify oidc token"):
        other_vo.ping()
    with pytest.raises(IddsError, match="no iDDS token"):
        IddsConnection(IddsSettings(idds_server.url, None))
    with pytest.raises(IddsError, match="OIDC tokens only"):
        submit_workflow(loop, idds_server.url, {"auth_type": "x509_proxy"})


def test_one_token_of_the_oidc_issuer_is_accepted_by_monitor_panda_and_idds(
        oidc_issuer, panda_for_idds, idds_server, tmp_path):
    """Auth like the rest of the stack (issue 16): the monitor finds the issuer's keys by its
    discovery document and JWKS, as PanDA and iDDS do, and maps the VO groups to roles."""
    token = oidc_issuer.token("Paula Production", ["epic", "epic/production"], lifetime_s=3600)
    config = load_config(data_dir=tmp_path / "wfms", monitor={"issuers": [{
        "issuer": oidc_issuer.issuer, "name": "iam", "discovery": True, "groups_claim": "groups",
        "group_roles": {"epic": ["user"], "epic/production": ["production_manager"]}}]})
    monitor = Authenticator(config)
    who = monitor.verify(token)
    assert who.identity == (oidc_issuer.issuer, "Paula-Production")
    assert who.roles == {"user", "production_manager"} and who.may("job.control")
    panda = PandaConnection(PandaSettings(panda_for_idds.url, token, "epic.production"))
    task_id = panda.submit_task(taskparams.prompt_task(next(_runs), "E1_BNL"))
    assert panda.task_params(task_id)["vo"] == "epic"
    idds = IddsConnection(IddsSettings(idds_server.url, token, retries=1))
    loop, _calib, _reco = _calibration()
    assert idds.request(idds.submit(loop)).username == "Paula Production"
    outsider = LoopbackIssuer().start()  # the same claims from another issuer: refused by all
    try:
        forged = outsider.token("Paula Production", ["epic", "epic/production"], 3600)
    finally:
        outsider.stop()
    with pytest.raises(AuthError, match="not trusted"):
        monitor.verify(forged)
    with pytest.raises(PandaError):
        PandaConnection(PandaSettings(panda_for_idds.url, forged, "epic.production")
                        ).submit_task(taskparams.prompt_task(next(_runs), "E1_BNL"))
    with pytest.raises(IddsError, match="Failed to verify oidc token"):
        IddsConnection(IddsSettings(idds_server.url, forged, retries=1)).submit(loop)


def test_daemons_submit_the_ready_works_tasks_to_panda(idds_server, idds,
                                                             panda_for_idds):
    loop, calib, _ = _calibration()
    up, down = _tasks()
    ids = [idds.submit(loop), idds.submit(workflows.process_when_validated(up, down))]

    def submitted_to_panda() -> bool:
        return all(any(t.workload_id for t in idds.transforms(i)) for i in ids)

    idds_server.wait_for("a PanDA task for each request", submitted_to_panda, timeout_s=60)
    loop_works, validated_works = idds.transforms(ids[0]), idds.transforms(ids[1])
    # Clerk made a transform of the initial work only: the reconstruction waits for
    # is_converged, which iDDS evaluated on our EpicPandaWork (not finished: False)
    assert [t.name for t in loop_works] == [calib["taskName"]]
    assert [t.name for t in validated_works] == [up["taskName"]]
    assert idds.request(ids[0]).status == "Transforming"
    # the Carrier's Submitter submitted each work's JEDI task to the real PanDA server
    who = panda_for_idds.identity("Epic Production", production=True)
    panda = PandaConnection(PandaSettings(panda_for_idds.url, who.token, who.auth_vo))
    for work, sent in ((loop_works[0], calib), (validated_works[0], up)):
        assert work.processing_status == "Submitted"
        stored = panda.task_params(work.workload_id)
        assert {k: stored[k] for k in ("taskName", "vo", "prodSourceLabel", "runUntilClosed",
                                       "processingType")} == {
            k: sent[k] for k in ("taskName", "vo", "prodSourceLabel", "runUntilClosed",
                                 "processingType")}


def test_idds_keeps_the_files_of_a_works_input_dataset(idds_server, idds, rucio_server,
                                                      tmp_path):
    """A work reading a Rucio dataset: iDDS's Carrier lists the dataset's files (through
    ``EpicPandaWork.get_new_input_output_maps``, in iDDS's daemon) and keeps one input and
    one output content per file for the work's processing."""
    ddm = RucioDDM(rucio_server.settings("epic"), rucio_server.rses)
    add_scope(ddm.client, "epic")
    up, down = _tasks()
    dataset = DID(*up["jobParameters"][1]["dataset"].split(":"))
    ddm.add_dataset(dataset)
    names = [f"{dataset.name}.{seq:06d}.stf" for seq in (1, 2, 3)]
    specs = []
    for name in names:
        path = tmp_path / name
        path.write_bytes(name.encode())
        specs.append(FileSpec(DID("epic", name), "BNL_DISK", str(path), path.stat().st_size,
                              file_adler32(path)))
    ddm.register_and_attach(specs, {dataset: [s.did for s in specs]})
    ddm.close_dataset(dataset)
    request_id = idds.submit(workflows.process_when_validated(up, down))

    def mapped() -> list:
        found = idds.files(request_id)
        return found if len(found) == 2 * len(names) else []

    idds_server.wait_for("the input dataset's files as iDDS contents", mapped, timeout_s=60)
    found = mapped()
    [upstream] = idds.transforms(request_id)
    assert {f.transform_id for f in found} == {upstream.transform_id}
    by_relation = {rel: sorted(f.name for f in found if f.relation == rel)
                   for rel in ("Input", "Output")}
    assert by_relation == {"Input": names, "Output": names}  # one output per input file
    assert {f.scope for f in found if f.relation == "Input"} == {"epic"}
    # nothing ran (no JEDI here): nothing consumed or produced yet
    assert {f.status for f in found} == {"New"}


def test_commands_are_checked_by_owner_and_executed_by_the_clerk(idds_server, idds):
    ids = [idds.submit(_calibration()[0]) for _ in range(3)]
    idds_server.wait_for("requests transforming", lambda: all(
        idds.request(i).status == "Transforming" for i in ids), timeout_s=60)
    mallory = IddsConnection(IddsSettings(idds_server.url, idds_server.token("Mallory Other"),
                                          retries=1))
    with pytest.raises(IddsError, match="no permission to update request"):
        mallory.abort(ids[0])
    assert "registered" in idds.abort(ids[0])
    assert "registered" in idds.close(ids[1])
    idds_server.wait_for("abort and close executed", lambda: [
        idds.request(i).status for i in ids[:2]] == ["Cancelling", "Cancelling"], timeout_s=40)
    assert idds.request(ids[2]).status == "Transforming"  # untouched
    # retry is iDDS's ResumeRequest command, queued for the Clerk like the others (whose
    # 10 s command cycle skips a command whose request it finds locked: not waited for here)
    assert "registered" in idds.retry(ids[0])
    commands = idds_server.query("SELECT request_id, cmd_type FROM doma_idds.commands "
                                 "WHERE request_id = ANY(%s) ORDER BY cmd_id", ids)
    assert commands == [(ids[0], 10), (ids[1], 13), (ids[0], 11)]  # Abort, Close, Resume


def test_cli_submits_a_rendered_template_and_shows_the_request(idds_server, tmp_path):
    token = tmp_path / "token"
    token.write_text(idds_server.token(OWNER))
    runner = CliRunner()
    rendered = runner.invoke(cli, ["template", "render", "calibration", "--run",
                                   str(next(_runs)), "--target", "idds", "--json"])
    assert rendered.exit_code == 0, rendered.output
    name = json.loads(rendered.output)["name"]
    workflow_file = tmp_path / "calibration.json"
    workflow_file.write_text(rendered.output)
    env = {"EPIC_IDDS_HOST": idds_server.url, "EPIC_IDDS_TOKEN_FILE": str(token)}
    submitted = runner.invoke(cli, ["idds", "submit", str(workflow_file)], env=env)
    assert submitted.exit_code == 0, submitted.output
    request_id = int(submitted.output.strip().splitlines()[-1])
    shown = runner.invoke(cli, ["idds", "status", str(request_id), "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    status = json.loads(shown.output.strip().splitlines()[-1])
    assert (status["request_id"], status["name"], status["username"]) == (
        request_id, name, OWNER)
    missing = runner.invoke(cli, ["idds", "status", "987654"], env=env)
    assert missing.exit_code != 0 and "has no request 987654" in missing.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a workflow"}')
    refused = runner.invoke(cli, ["idds", "submit", str(bad)], env=env)
    assert refused.exit_code != 0 and "is not an iDDS workflow" in refused.output


class _Replies(stomp.ConnectionListener):
    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.subscribed = threading.Event()

    def on_receipt(self, frame) -> None:
        self.subscribed.set()

    def on_message(self, frame) -> None:
        self.messages.append(json.loads(frame.body))

    def of(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m.get("msg_type") == kind]


def test_worker_pool_through_the_prompt_service_into_panda(idds_server, idds, panda_for_idds):
    replies = _Replies()
    conn = stomp.Connection12([("127.0.0.1", 61613)], vhost=STOMP_VHOST)
    conn.set_listener("", replies)
    conn.connect("guest", "guest", wait=True)
    conn.subscribe(idds_server.reply_topic, id="1", ack="auto",
                   headers={"receipt": "subscribed"})
    assert replies.subscribed.wait(10)
    channel = StompPromptChannel(StompSettings(vhost=STOMP_VHOST, client_id="test-prompt"),
                                 idds_server.prompt_topic)
    pool = WorkerPool(run_number=next(_runs), queue="BNL_EPIC_PROMPT", panda_site="E1_BNL",
                      workers=8, cores=4, memory_per_core_mb=3000, walltime_s=7200)
    sent = [0.0]

    def created() -> bool:  # the Transceiver subscribes once the daemons run: resend till then
        if replies.of("created_workflow_task"):
            return True
        if time.monotonic() - sent[0] > 3:
            channel.send(pool.create_message())
            sent[0] = time.monotonic()
        return False

    try:
        idds_server.wait_for("the Transceiver's created_workflow_task", created, timeout_s=60)
        reply = replies.of("created_workflow_task")[0]["content"]
        request_id, transform_id = reply["request_id"], reply["transform_id"]
        assert idds.request(request_id, with_workflow=False).name == pool.workflow()["name"]
        # iDDS submitted the pool's PanDA task (panda-client insertTaskParams) to the real
        # PanDA server, and keeps PanDA's jediTaskID as the transform's workload id
        jedi_task_id = reply["workload_id"]
        assert isinstance(jedi_task_id, int) and jedi_task_id > 0, reply
        assert [t.workload_id for t in idds.transforms(request_id)] == [jedi_task_id]
        who = panda_for_idds.identity("Epic Production", production=True)
        panda = PandaConnection(PandaSettings(panda_for_idds.url, who.token, who.auth_vo))
        task = panda.task_params(jedi_task_id)
        assert (task["taskName"], task["vo"], task["site"], task["PandaSite"],
                task["prodSourceLabel"], task["processingType"]) == (
            pool.workflow()["name"], "epic", "BNL_EPIC_PROMPT", "E1_BNL", "managed",
            "epic_fastpath")
        assert task["jobParameters"][0]["value"] == f"--run_id {pool.run_number} --idle_timeout 120"
        assert (task["coreCount"], task["ramCount"], task["maxWalltime"], task["nEvents"],
                task["reqID"]) == (4, 3000, 7200, 8, request_id)
        metadata = _stored(idds_server, "transform_metadata", "transforms", "transform_id",
                           transform_id)
        assert (metadata["worker_count"], metadata["core_count"], metadata["memory_per_core"],
                metadata["site"]) == (8, 4, 3000, "E1_BNL")
        assert metadata["panda_attributes"]["walltime"] == 7200
        # rescale over STOMP: iDDS 2.6.21's handler keeps cores, memory and site only
        channel.send(pool.adjust_message(16, request_id=request_id, transform_id=transform_id))
        idds_server.wait_for("adjusted_worker", lambda: bool(replies.of("adjusted_worker")),
                             timeout_s=30)
        adjusted = replies.of("adjusted_worker")[0]["content"]
        assert (adjusted["request_id"], adjusted["transform_id"], adjusted["core_count"]) == (
            request_id, transform_id, 4)
        # close at end of run over REST (idds-client's WorkflowTaskClient): processing ToCancel
        rest = RestPromptChannel(idds_server.url, auth=idds_server.auth(OWNER))
        rest.send(pool.close_message(request_id=request_id))
        assert {t.processing_status for t in idds.transforms(request_id)} == {"ToCancel"}
        # idds-server 2.6.21's REST create unpacks the handler's 7-key dict into 6 names:
        # it stores the task, then answers 500. The channel finds the stored request by its
        # name and takes it (docs/panda-idds.md)
        other = WorkerPool(run_number=next(_runs), queue="JLAB_EPIC_PROMPT", workers=2)
        taken = rest.send(other.create_message())
        stored = idds.client.get_request_id_by_name(other.name)[other.name]
        assert taken == {"run_id": other.run_number, "request_id": stored}
        assert idds.request(stored, with_workflow=False).status == "Transforming"
        # a create iDDS refuses outright stays an error saying so
        with pytest.raises(IddsError, match="did not take create_workflow_task"):
            RestPromptChannel(idds_server.url, auth={"auth_type": "oidc", "vo": "epic",
                                                     "oidc_token": "not-a-token"}).send(
                WorkerPool(run_number=next(_runs), queue="JLAB_EPIC_PROMPT",
                           workers=1).create_message())
    finally:
        channel.close()
        conn.disconnect()
