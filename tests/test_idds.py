"""iDDS backend: conditional ePIC workflows as real idds-workflow objects, and the prompt
service's worker-pool requests over the real STOMP broker.

These check the workflows through idds-workflow's own condition evaluation and JSON encoding
(what idds-client sends); tests/test_idds_server.py runs them against a real iDDS server.
"""

from __future__ import annotations

import json
import threading
import uuid

import pytest
import stomp
from idds.common.constants import WorkStatus

from epic_wfms.bus.stomp import StompSettings
from epic_wfms.errors import ConfigurationError
from epic_wfms.wfms.idds import workflows
from epic_wfms.wfms.idds.prompt_pool import StompPromptChannel, WorkerPool
from epic_wfms.wfms.idds.submit import IddsError, deserialise, serialise, submit_workflow
from epic_wfms.wfms.idds.works import EpicPandaWork
from epic_wfms.wfms.panda import taskparams
from epic_wfms.wfms.panda.errors import TaskParamsError


def _finish(work: EpicPandaWork, **results) -> None:
    work.status = WorkStatus.Finished
    work.report(**results)


def test_calibration_loops_until_the_residual_is_within_tolerance():
    calib = taskparams.prompt_task(100001, "E1_BNL")
    calib["taskName"] += ".calib"
    reco = taskparams.prompt_task(100001, "E1_BNL")
    wf = workflows.calibration_loop(calib, reco, tolerance=0.05)
    # through iDDS's own JSON encoding and back, as idds-client ships it
    restored = deserialise(serialise(wf))
    works = {w.task_name: w for w in restored.get_all_works()}
    assert set(works) == {calib["taskName"], reco["taskName"]}
    work = works[calib["taskName"]]
    assert isinstance(work, EpicPandaWork) and work.task_parameters == calib
    _finish(work, residual=0.2)
    assert work.is_not_converged() and not work.is_converged()
    _finish(work, residual=0.01)
    assert work.is_converged() and not work.is_not_converged()
    with pytest.raises(TaskParamsError, match="tolerance"):
        workflows.calibration_loop(calib, reco, tolerance=0)


@pytest.mark.parametrize("accept", [False, True])
def test_the_loop_stops_after_max_iterations(accept):
    """The template's ``max_iterations``/``on_exhausted`` on iDDS: the last iteration not
    within tolerance ends the loop; the reconstruction then starts only if accepted."""
    calib = taskparams.prompt_task(100001, "E1_BNL")
    calib["taskName"] += ".calib"
    reco = taskparams.prompt_task(100001, "E1_BNL")
    wf = workflows.calibration_loop(calib, reco, tolerance=0.05, max_iterations=3,
                                    accept_exhausted=accept)
    work = next(w for w in deserialise(serialise(wf)).get_all_works()
                if w.task_name == calib["taskName"])
    _finish(work, residual=0.2)
    for iteration, again in ((1, True), (2, True), (3, False)):
        work.num_run = iteration  # what iDDS sets on each run of the loop
        assert work.is_not_converged() is again, iteration
        assert work.is_converged() is (accept and not again), iteration
    _finish(work, residual=0.01)  # converged in the last iteration: always taken
    assert work.is_converged() and not work.is_not_converged()


def test_downstream_waits_for_a_validated_upstream():
    up = taskparams.prompt_task(100002, "E1_JLAB")
    down = taskparams.merge_task(100002, "E1_JLAB")
    wf = deserialise(serialise(workflows.process_when_validated(up, down)))
    upstream = next(w for w in wf.get_all_works() if w.task_name == up["taskName"])
    assert not upstream.is_validated()  # not even finished
    _finish(upstream, validated=False)
    assert not upstream.is_validated()
    upstream.report(validated=True)
    assert upstream.is_validated()


def test_hpo_request_needs_a_search_space():
    training = taskparams.prompt_task(100003, "E1_BNL")
    request = workflows.hyperparameter_optimisation(
        training, {"lr": {"type": "float", "min": 1e-4, "max": 1e-1}}, max_points=8)
    assert request["opt_space"]["lr"]["max"] == 0.1 and request["max_points"] == 8
    with pytest.raises(TaskParamsError, match="search space"):
        workflows.hyperparameter_optimisation(training, {})


def test_worker_pool_requests_reach_the_broker_in_the_prompt_services_format():
    destination = f"/topic/panda.workflow.{uuid.uuid4().hex[:8]}"
    received, done, subscribed = [], threading.Event(), threading.Event()

    class Listener(stomp.ConnectionListener):
        def on_receipt(self, frame):
            subscribed.set()

        def on_message(self, frame):
            received.append((frame.headers, json.loads(frame.body)))
            if len(received) == 3:
                done.set()

    listener_conn = stomp.Connection12([("127.0.0.1", 61613)], vhost="/")
    listener_conn.set_listener("", Listener())
    listener_conn.connect("guest", "guest", wait=True)
    # a topic keeps nothing for a subscription not yet made: wait for the broker's receipt
    listener_conn.subscribe(destination, id="1", ack="auto", headers={"receipt": "subscribed"})
    assert subscribed.wait(10)
    channel = StompPromptChannel(StompSettings(client_id="test-prompt"), destination)
    pool = WorkerPool(run_number=100004, queue="BNL_EPIC_PROMPT", panda_site="E1_BNL",
                      workers=8, cores=4, memory_per_core_mb=3000, walltime_s=7200)
    try:
        channel.send(pool.create_message())
        channel.send(pool.adjust_message(16, request_id=7, transform_id=8, workload_id=9))
        channel.send(pool.close_message(request_id=7))
        assert done.wait(20), received
    finally:
        channel.close()
        listener_conn.disconnect()
    kinds = [body["msg_type"] for _, body in received]
    assert kinds == ["create_workflow_task", "adjust_worker", "close_workflow_task"]
    content = received[0][1]["content"]["workflow"]["content"]
    assert (content["run_id"], content["target_worker_count"], content["core_count"],
            content["memory_per_core"], content["site"]) == (100004, 8, 4, 3000, "E1_BNL")
    assert (content["panda_attributes"]["walltime"], content["panda_attributes"]["queue"]) == (
        7200, "BNL_EPIC_PROMPT")
    assert received[1][1]["content"]["target_worker_count"] == 16
    assert received[0][0]["msg_type"] == "create_workflow_task"


def test_bad_pools_and_unreachable_idds_get_clear_errors():
    with pytest.raises(ConfigurationError, match="at least one worker"):
        WorkerPool(run_number=1, queue="X", workers=0)
    wf = workflows.process_when_validated(taskparams.prompt_task(100005, "E1_BNL"),
                                          taskparams.merge_task(100005, "E1_BNL"))
    with pytest.raises(IddsError, match=r"did not take.*Connection"):
        submit_workflow(wf, host="http://127.0.0.1:9/idds",
                        auth={"auth_type": "oidc", "oidc_token": "t", "vo": "epic"}, retries=1)


def test_each_iteration_and_validated_downstream_submit_their_own_task():
    """What iDDS's Submitter sends to PanDA for a work: later loop iterations under their own
    names and outputs with the previous constant; downstream of a validation, only the
    validated files of its input dataset (JEDI's ``files`` on the input item)."""
    calib = taskparams.prompt_task(100006, "E1_BNL",
                                   command="python -m epic_wfms.wfms.payloads.calibrate")
    calib["taskName"] += ".calib"
    wf = deserialise(serialise(workflows.calibration_loop(calib, taskparams.merge_task(
        100006, "E1_BNL"), tolerance=0.5)))
    work = next(w for w in wf.get_all_works() if w.task_name == calib["taskName"])
    assert work.task_to_submit() == calib  # the first iteration: as built
    work.num_run, work.user_constant = 2, 1.25  # what iDDS sets on the next iteration
    second = work.task_to_submit()
    assert second["taskName"] == calib["taskName"] + ".it2"
    outputs = [i for i in second["jobParameters"] if i.get("param_type") == "output"]
    assert [o["dataset"] for o in outputs] == ["epic:swf.100006.E1_BNL.reco.it2"]
    assert second["jobParameters"][-1] == {"type": "constant", "value": "--previous=1.25"}
    up, down = taskparams.prompt_task(100007, "E1_BNL"), taskparams.merge_task(100007, "E1_BNL")
    wf = deserialise(serialise(workflows.process_when_validated(up, down)))
    downstream = next(w for w in wf.get_all_works() if w.task_name == down["taskName"])
    assert downstream.allowed_inputs() == set()  # nothing validated yet: nothing to read
    downstream.user_validated_files = ["b.stf", "a.stf"]
    [item] = [i for i in downstream.task_to_submit()["jobParameters"]
              if i.get("param_type") == "input"]
    assert item["files"] == ["a.stf", "b.stf"] and item["dataset"] == "epic:swf.100007.E1_BNL.reco"


def test_the_installation_idds_comes_from_wfms_idds_and_the_epic_idds_variables(
        tmp_path, monkeypatch):
    """One iDDS for ``template submit --target idds`` and ``epic-wfms idds``: wfms.idds of
    the configuration, EPIC_IDDS_HOST / EPIC_IDDS_TOKEN_FILE over it; strict and explained;
    without it, no idds submitter (``--target idds`` is a dry run) and a clear refusal."""
    from click.testing import CliRunner

    from epic_wfms.cli.main import cli
    from epic_wfms.config import load_config
    from epic_wfms.installation import build_idds_connection, open_database, template_submitters

    for name in ("EPIC_IDDS_HOST", "EPIC_IDDS_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    token = tmp_path / "token"
    token.write_text("a-token\n")
    path = tmp_path / "config.yaml"
    path.write_text(f"data_dir: {tmp_path / 'data'}\n"
                    "wfms: {idds: {host: 'https://idds.example:443/idds'}}\n")
    with pytest.raises(ConfigurationError, match="token_file"):
        load_config(path)
    path.write_text(f"data_dir: {tmp_path / 'data'}\n"
                    "wfms: {idds: {host: 'idds.example', token_file: 'x'}}\n")
    with pytest.raises(ConfigurationError, match="not a URL"):
        load_config(path)
    path.write_text(f"data_dir: {tmp_path / 'data'}\n"
                    f"wfms: {{idds: {{host: 'https://idds.example:443/idds', "
                    f"token_file: '{token}', vo: epic}}}}\n")
    config = load_config(path)
    assert (config.wfms.idds.host, config.wfms.idds.token_file) == (
        "https://idds.example:443/idds", token)
    monkeypatch.setenv("EPIC_IDDS_HOST", "http://127.0.0.1:9/idds")
    config = load_config(path)
    assert config.wfms.idds.host == "http://127.0.0.1:9/idds"
    connection = build_idds_connection(config)
    assert (connection.settings.host, connection.settings.token) == (
        "http://127.0.0.1:9/idds", "a-token")
    monkeypatch.delenv("EPIC_IDDS_HOST")
    db = open_database(config)
    try:
        assert "idds" in template_submitters(config, db)
        assert "idds" not in template_submitters(load_config(), db)
    finally:
        db.dispose()
    # the idds CLI finds the same server in --config; its options come first
    from epic_wfms.cli.idds import _connect

    assert _connect(None, None, None, path).settings.host == "https://idds.example:443/idds"
    assert _connect("http://other/idds", None, None, path).settings.host == "http://other/idds"
    shown = CliRunner().invoke(cli, ["idds", "status", "1"])
    assert shown.exit_code != 0 and "no iDDS server" in shown.output
    # without wfms.idds, --target idds records a dry run and refuses a real submission
    bare = tmp_path / "bare.yaml"
    bare.write_text(f"data_dir: {tmp_path / 'bare'}\n")
    args = ["template", "submit", "calibration", "--run", "7", "--target", "idds", "--config",
            str(bare)]
    dry = CliRunner().invoke(cli, [*args, "--dry-run", "--json"])
    assert dry.exit_code == 0 and json.loads(dry.output)["status"] == "dry-run"
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code != 0 and "no idds submitter is configured" in refused.output
