"""A Snakemake workflow's jobs as PanDA jobs: `epic-wfms panda snakemake` runs Snakemake
9.16.3 with eic's snakemake-executor-plugin-panda 1.1.0 against the loopback panda-server.

Real: Snakemake's scheduler and its fs storage provider; the plugin building the task with
panda-client's prun (sandbox uploaded to the server's cache) and `insertTaskParams`; JEDI's
TaskRefiner, ContentsFeeder and JobGenerator making the PanDA job at the ePIC queue; the
plugin's `getTaskStatus` polling and, when Snakemake is stopped, its `killTask`, which JEDI's
TaskCommando and PostProcessor act on. What the loopback cannot do yet (docs/snakemake.md):
run the job: its transformation is PanDA's runGen (it fetches the sandbox from the server's
cache and runs the command), which neither the pilot nor the loopback server provides.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from epic_wfms.wfms.panda.client import PandaConnection, PandaSettings
from loopback.panda import LocalPandaServer

QUEUE = "BNL_EPIC_PROMPT"
WORKFLOW = Path(__file__).parent / "data" / "snakemake_panda"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> LocalPandaServer:
    panda = LocalPandaServer(tmp_path_factory.mktemp("panda-snakemake"))
    panda.start()
    yield panda
    panda.stop()


def until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


# ``epic-wfms`` as a user runs it, Ctrl-C included: a test runner started in the background
# ignores SIGINT (POSIX, for asynchronous commands of a shell without job control), its
# children inherit that, and Python then leaves SIGINT ignored; Snakemake must get it
INTERRUPTIBLE = ("import runpy, signal, sys; signal.signal(signal.SIGINT, "
                 "signal.default_int_handler); sys.argv[0] = 'epic-wfms'; "
                 "runpy.run_module('epic_wfms.cli.main', run_name='__main__')")


def test_snakemake_jobs_become_jedi_tasks_and_panda_jobs(server, tmp_path):
    # the plugin writes outDS user.veprbl.<uuid> whoever submits (its author's nickname):
    # prun accepts that only from a token whose nickname is veprbl
    who = server.identity("Veprbl Physicist", production=False)
    (tmp_path / "token").write_text(who.token)
    config = tmp_path / "epic-wfms.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "wfms": {"panda": {
        "url": server.url, "auth_vo": who.auth_vo, "token_file": str(tmp_path / "token")}}}))
    workflow = Path(shutil.copytree(WORKFLOW, tmp_path / "workflow"))
    log = (tmp_path / "snakemake.log").open("wb")
    python_bin = Path(sys.executable).parent
    snakemake = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTIBLE, "panda", "snakemake", "--site", QUEUE,
         "--config", str(config), "--", "--jobs", "1", "--default-storage-provider", "fs",
         "--default-storage-prefix", str(tmp_path / "storage"), "--panda-pre-script",
         f"export PATH={python_bin}:$PATH PANDA_BEHIND_REAL_LB=1"],
        cwd=workflow, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    panda = PandaConnection(PandaSettings(server.url, who.token, who.auth_vo))
    try:
        # the plugin submitted the first rule's job: JEDI's TaskRefiner takes the task
        [task] = until(server.refine_tasks, 240, "the plugin's task to reach JEDI")
        assert task["status"] == "defined", task
        task_id = task["jediTaskID"]
        params = panda.task_params(task_id)
        assert params["processingType"] == "snakemake_plugin"
        assert params["site"] == QUEUE and params["vo"] == "epic"
        assert params["prodSourceLabel"] == "test"
        feed, generate = server.jedi_cycle("feed", "generate")
        assert task_id in feed["tasks"] and generate["jobs"] == 1
        [job] = panda.jobs(panda.job_ids(task_id))
        assert (job.jobStatus, job.computingSite, job.prodSourceLabel) == (
            "activated", QUEUE, "test")
        # the job runs Snakemake's job script for rule `numbers` from the uploaded sandbox
        assert "snakejob.numbers" in job.jobParameters and "-a jobO." in job.jobParameters
        assert panda.task_status(task_id) == "running"
        # only the first rule is at PanDA: `total` waits for its input
        assert len(server.refine_tasks()) == 0
        assert snakemake.poll() is None, (tmp_path / "snakemake.log").read_text()[-2000:]
    finally:
        if snakemake.poll() is None:  # Snakemake cancels its jobs: the plugin's killTask
            os.killpg(snakemake.pid, signal.SIGINT)
            try:
                snakemake.wait(timeout=120)
            except subprocess.TimeoutExpired:
                snakemake.kill()
                snakemake.wait()
        log.close()
    text = (tmp_path / "snakemake.log").read_text()
    assert f"Task id {task_id}" in text, text[-2000:]  # the plugin's submission message
    # Snakemake cancelled its job: the plugin's killTask, which TaskCommando acts on (the job
    # is cancelled as killed by its owner) and the PostProcessor ends the task
    server.jedi_cycle("command", "finish")
    [job] = panda.jobs(panda.job_ids(task_id))
    assert job.jobStatus == "cancelled" and job.taskBufferErrorDiag == "kill by Veprbl Physicist"
    assert panda.task_status(task_id) in ("aborted", "broken")  # JEDI's ends without success
