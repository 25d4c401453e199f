"""A streaming run's prompt processing done by the loopback stack as a chain, as in production.

What runs for real, all at once and nobody driving it: the Rucio server (the run's open E1
dataset, STFs attached as they arrive, at BNL_DISK on local disk); the PanDA server with
JEDI's master process (TaskRefiner, ContentsFeeder on the open dataset, JobGenerator,
PostProcessor, TaskCommando, WatchDog) and the server's daemons (Adder with ePIC's adder
plug-in registering outputs in Rucio, the heartbeat watcher), both watched and restarted by
the harness; Harvester starting a Pilot 3 per activated job; each pilot reading its STF from
the RSE's directory, running the reco payload, moving the output to its Rucio path.

One prompt task (``runUntilClosed``) is submitted after the run's first STF is attached,
more STFs follow over time. One STF's first attempt fails in the payload, another's pilot is
killed (``kill -9``) mid-job: both are retried by JEDI and every STF is processed once (one
finished job, one output in the task's output dataset in Rucio). Closing the input dataset
makes the task finish by itself (``done``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest

from epic_wfms.config import RucioConfig
from epic_wfms.ddm.interface import DID, FileSpec
from epic_wfms.ddm.rucio.backend import RucioDDM
from epic_wfms.model import naming
from epic_wfms.model.checksum import file_adler32
from epic_wfms.model.stf_file import write_stf
from epic_wfms.wfms.panda import taskparams
from loopback.panda.pilot import TRANSFORMATION
from loopback.stack import RucioEndpoint, panda_stack

QUEUE, RSE, SITE = "BNL_EPIC_PROMPT", "BNL_DISK", "E1_BNL"
RUN = 400001
N_STF = 5
FAILS, HANGS = 2, 3  # sequence numbers: payload fails once / pilot killed mid-job once


def wait_until(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(1)
    raise AssertionError(f"not within {timeout_s:.0f} s: {what}")


def job_errors(job) -> dict[str, str]:
    """The error codes and diagnostics PanDA recorded for a job, by source."""
    names = ("pilotErrorCode", "pilotErrorDiag", "exeErrorCode", "exeErrorDiag",
             "jobDispatcherErrorCode", "jobDispatcherErrorDiag", "taskBufferErrorCode",
             "taskBufferErrorDiag", "supErrorCode", "supErrorDiag", "ddmErrorCode",
             "ddmErrorDiag", "brokerageErrorDiag")
    return {n: str(getattr(job, n)) for n in names
            if str(getattr(job, n, None)) not in ("None", "NULL", "0", "")}


@pytest.fixture(scope="module")
def stack(rucio_server, tmp_path_factory):
    server = rucio_server.server
    rucio = RucioEndpoint(server.config_file, server.url, server.username, server.password,
                          tuple(rucio_server.rses))
    with panda_stack(tmp_path_factory.mktemp("stack"), rucio, heartbeat_timeout_s=120,
                     ) as running:
        yield running


@pytest.fixture(scope="module")
def ddm(stack) -> RucioDDM:
    r = stack.rucio
    return RucioDDM(RucioConfig(host=r.url, username=r.username, password=r.password,
                                scope="epic"), list(r.rses))


def arrive(ddm: RucioDDM, dataset: DID, seq: int) -> str:
    """An STF written at its Rucio path on BNL_DISK, registered, attached to the dataset."""
    name = naming.stf_filename(RUN, seq)
    path = Path(ddm.rse(RSE).path_for("epic", name))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_stf(path, {"run_number": RUN, "sequence": seq}, 4, 30, random.Random(seq))
    ddm.register_and_attach([FileSpec(DID("epic", name), RSE, str(path), path.stat().st_size,
                                      file_adler32(path))], {dataset: [DID("epic", name)]})
    return name


def test_a_prompt_task_runs_by_itself_with_retries_and_finishes_when_closed(
        stack, ddm, tmp_path):
    panda = stack.connection()
    markers = tmp_path / "markers"
    markers.mkdir()
    (markers / f"{naming.stf_filename(RUN, FAILS)}.fail").touch()
    (markers / f"{naming.stf_filename(RUN, HANGS)}.hang").touch()
    dataset = DID("epic", naming.site_dataset(RUN, SITE))
    ddm.add_dataset(dataset)
    stfs = [arrive(ddm, dataset, 1)]  # a task on an empty open dataset would stall (pending)
    params = taskparams.prompt_task(RUN, SITE, taskparams.TaskOptions(
        site=QUEUE, container_image=None, extra={"transPath": TRANSFORMATION}),
        command=f"python -m loopback.panda.fault_injection {markers}")
    task_id = panda.submit_task(params)
    for seq in range(2, N_STF + 1):  # the rest of the run arrives while the task runs
        time.sleep(2)  # the pace of arrival, not a wait for a condition
        stfs.append(arrive(ddm, dataset, seq))

    # the pilot running the hanging attempt is killed mid-job
    hanging = markers / f"{stfs[HANGS - 1]}.hanging"
    wait_until(lambda: hanging.exists() and hanging.read_text().strip(), 300,
               "the pilot of the hanging attempt runs it")
    worker_id = int(hanging.read_text().split()[0])
    pilot = stack.harvester.pilot_pid(worker_id)
    assert pilot is not None
    os.kill(pilot, signal.SIGKILL)

    def jobs_by_stf():
        found: dict[str, list] = {}
        for job in panda.jobs(panda.job_ids(task_id)):
            [stf] = [f.lfn for f in job.Files if f.type == "input"]
            found.setdefault(stf, []).append(job)
        return found

    def all_processed():
        found = jobs_by_stf()
        done = {stf for stf, jobs in found.items()
                if any(j.jobStatus == "finished" for j in jobs)}
        return found if done == set(stfs) else None

    found = wait_until(all_processed, 600, "every STF's job finished")
    for stf, jobs in found.items():
        states = sorted((j.attemptNr, j.jobStatus) for j in jobs)
        assert [s for _, s in states].count("finished") == 1, (stf, states)
        seq = stfs.index(stf) + 1
        if seq in (FAILS, HANGS):  # first attempt failed, JEDI's retry finished it
            first = min(jobs, key=lambda j: j.attemptNr)
            assert first.jobStatus == "failed" and len(jobs) == 2, (stf, states)
            if seq == FAILS:
                assert int(first.transExitCode) == 65
            else:  # Harvester reported the worker failed: PanDA failed its running job
                assert "The worker was failed while the job was running : pilot killed by " \
                    "signal 9" in job_errors(first).get("taskBufferErrorDiag", ""), stf
        else:
            assert len(jobs) == 1, (stf, states)
    # the outputs: registered by ePIC's adder plug-in in the task's output dataset, at the
    # queue's RSE, where the pilot moved them
    out = DID("epic", f"{naming.site_dataset(RUN, SITE)}.reco")
    reco_files = wait_until(lambda: len(ddm.list_files(out)) >= N_STF and ddm.list_files(out),
                            60, "outputs attached in Rucio")
    read = [json.loads(Path(ddm.local_path(did, RSE)).read_text())["stf"] for did in reco_files]
    assert sorted(read) == stfs  # each STF processed once, its output where Rucio says
    # end of run: the input dataset closed -> the task finishes by itself
    ddm.close_dataset(dataset)
    wait_until(lambda: panda.task_status(task_id) == "done", 240, "the task ends done")
    # nothing crashed; JEDI may have been restarted for an agent that hung (its
    # PostProcessor waiting on JEDI's DB-worker interface: docs/panda-idds.md)
    restarts = stack.restarts()
    assert restarts["PanDA daemons"] == []
    assert all("not written" in why for _, why in restarts["JEDI"]), restarts["JEDI"]
