"""One cycle of JEDI's agents for VO ``epic``, in-process, with the PanDA venv's Python.

JEDI runs its agents (ContentsFeeder, JobGenerator, TaskCommando, ...) as a multi-process
daemon whose ``start()`` loops forever. This runs the body of one loop of each, with JEDI's
own classes on the server's database, the way JEDI's ``jeditest`` scripts drive them:

- ``feed``: ContentsFeeder. ``getDatasetsToFeedContents_JEDI`` then ``ContentsFeederThread``:
  the task's input dataset is read from the DDM (JEDI's ``DDMInterface`` starts our
  ``EpicJediDDMClient`` from ``[ddm] modConfig`` in a child process; it asks Rucio) into
  ``JEDI_Dataset_Contents``; the task goes ``defined -> ready`` (or ``pending`` while its open
  dataset is still empty).
- ``generate``: JobGenerator. Per work queue and resource type, ``JobThrottler``,
  ``getTasksToBeProcessed_JEDI``, then ``JobGeneratorThread``: JobBroker (``GenJobBroker``,
  queues from ``schedconfig_json``), JobSplitter, job generation, ``storeJobs`` and the
  server's ``job/reassign`` (``execJobs``) that activates them; the task goes ``running``.
- ``command``: TaskCommando. ``getTasksToExecCommand_JEDI`` then ``TaskCommandoThread``:
  ``kill``/``finish`` kill the task's jobs and set the task's final state, ``retry`` re-runs
  unsuccessful files.

The JEDI process calls the server's REST API (``job/reassign``) as the production identity
given by ``PANDA_AUTH_ID_TOKEN`` (+ ``PANDA_AUTH=oidc``, ``PANDA_AUTH_VO``). Prints one JSON
line per agent: ``{"agent", "tasks"|"jobs", "seconds"}``.

Usage: PANDA_HOME=<server workdir> python jedi_cycle.py <plugins dir> <vo> feed|generate|command...
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time


def _pid(tag: str) -> str:
    return f"{socket.getfqdn().split('.')[0]}-{os.getpid()}_{os.getpgrp()}-{tag}"


def task_buffer():
    """JEDI's TaskBuffer in this process (the daemon serves it to its agents over pipes)."""
    from pandajedi.jedicore.JediTaskBuffer import JediTaskBuffer

    return JediTaskBuffer(None)


def ddm_interface():
    """JEDI's DDMInterface: one child process per ``[ddm] modConfig`` entry."""
    from pandajedi.jediddm.DDMInterface import DDMInterface

    ddm = DDMInterface()
    ddm.setupInterface()
    return ddm


def _run_threads(make, n: int) -> None:
    from pandajedi.jedicore.ThreadUtils import ThreadPool

    pool = ThreadPool()
    for _ in range(n):
        thread = make(pool)
        thread.start()
    pool.join()


def feed(tb, ddm, vo: str, labels: list[str]) -> dict:
    from pandajedi.jediconfig import jedi_config
    from pandajedi.jedicore.ThreadUtils import ListWithLock
    from pandajedi.jediorder.ContentsFeeder import ContentsFeederThread

    tasks = []
    for label in labels:
        found = tb.getDatasetsToFeedContents_JEDI(vo, label) or []
        tasks += [task_id for task_id, _ in found]
        datasets = ListWithLock(found)
        _run_threads(lambda pool, d=datasets: ContentsFeederThread(d, pool, tb, ddm, _pid("con")),
                     jedi_config.confeeder.nWorkers)
    return {"agent": "ContentsFeeder", "tasks": tasks}


def generate(tb, ddm, vo: str, labels: list[str]) -> dict:
    from pandajedi.jediconfig import jedi_config
    from pandajedi.jedicore.ThreadUtils import ListWithLock
    from pandajedi.jediorder.JobGenerator import JobGeneratorThread
    from pandajedi.jediorder.JobThrottler import JobThrottler
    from pandajedi.jediorder.TaskSetupper import TaskSetupper

    site_mapper = tb.get_site_mapper()
    queues = tb.getWorkQueueMap()
    resource_types = tb.load_resource_types() or []
    throttle = JobThrottler(vo, labels)
    throttle.initializeMods(tb)
    setupper = TaskSetupper(vo, labels)
    setupper.initializeMods(tb, ddm)
    pid = _pid("gen")
    tasks, jobs_before = [], _count_jobs(tb)
    for label in labels:
        for queue in queues.getAlignedQueueList(vo, label):
            for rtype in resource_types:
                _, throttled = throttle.toBeThrottled(vo, label, None, queue, rtype.resource_name)
                if throttled is True:
                    continue
                found = tb.getTasksToBeProcessed_JEDI(
                    pid, vo, queue, label, None, nTasks=jedi_config.jobgen.nTasks,
                    nFiles=jedi_config.jobgen.nFiles, minPriority=throttle.minPriority,
                    maxNumJobs=throttle.maxNumJobs, typicalNumFilesMap={},
                    resource_name=rtype.resource_name) or []
                tasks += [task_id for task_id, _ in found]
                inputs = ListWithLock(found)
                _run_threads(lambda pool, i=inputs, q=queue, r=rtype: JobGeneratorThread(
                    i, pool, tb, ddm, site_mapper, True, setupper, pid, q, r.resource_name, None,
                    None, ListWithLock([]), False, resource_types),
                    jedi_config.jobgen.nWorkers)
    return {"agent": "JobGenerator", "tasks": tasks, "jobs": _count_jobs(tb) - jobs_before}


def command(tb, ddm, vo: str, labels: list[str]) -> dict:
    from pandajedi.jediconfig import jedi_config
    from pandajedi.jedicore.ThreadUtils import ListWithLock
    from pandajedi.jediorder.TaskCommando import TaskCommandoThread

    tasks = []
    for label in labels:
        found = tb.getTasksToExecCommand_JEDI(vo, label) or []
        tasks += [task_id for task_id, _ in found]
        todo = ListWithLock(found)
        _run_threads(lambda pool, t=todo: TaskCommandoThread(t, pool, tb, ddm, _pid("dog")),
                     jedi_config.tcommando.nWorkers if hasattr(jedi_config.tcommando, "nWorkers")
                     else 1)
    return {"agent": "TaskCommando", "tasks": tasks}


def finish(tb, ddm, vo: str, labels: list[str]) -> dict:
    from pandacommon.pandalogger.PandaLogger import PandaLogger
    from pandajedi.jediconfig import jedi_config
    from pandajedi.jedicore.FactoryBase import FactoryBase
    from pandajedi.jedicore.ThreadUtils import ListWithLock
    from pandajedi.jediorder.PostProcessor import PostProcessorThread

    factory = FactoryBase(vo, labels, PandaLogger().getLogger("PostProcessor"),
                          jedi_config.postprocessor.modConfig)
    factory.initializeMods(tb, ddm)
    pid, n_tasks, tasks = _pid("post"), jedi_config.postprocessor.nTasks, []
    for label in labels:
        targets = tb.prepareTasksToBeFinished_JEDI(vo, label, n_tasks, pid=pid)
        found = tb.getTasksToBeFinished_JEDI(vo, label, pid, n_tasks, target_tasks=targets) or []
        tasks += [spec.jediTaskID for spec in found]
        todo = ListWithLock(found)
        _run_threads(lambda pool, t=todo: PostProcessorThread(t, pool, tb, ddm, factory),
                     jedi_config.postprocessor.nWorkers)
    return {"agent": "PostProcessor", "tasks": tasks}


def _count_jobs(tb) -> int:
    rows = tb.querySQL("SELECT (SELECT COUNT(*) FROM DOMA_PANDA.jobsDefined4) + "
                       "(SELECT COUNT(*) FROM DOMA_PANDA.jobsActive4)", {})
    return int(rows[0][0]) if rows else 0


AGENTS = {"feed": feed, "generate": generate, "command": command, "finish": finish}


def main(argv: list[str]) -> int:
    sys.path.insert(0, argv[0])
    vo, steps = argv[1], argv[2:]
    unknown = [s for s in steps if s not in AGENTS]
    if unknown or not steps:
        print(f"usage: jedi_cycle.py <plugins> <vo> {'|'.join(AGENTS)}...", file=sys.stderr)
        return 2
    tb, ddm = task_buffer(), ddm_interface()
    labels = ["managed", "test", "user"]
    for step in steps:
        t0 = time.perf_counter()
        result = AGENTS[step](tb, ddm, vo, labels)
        print(json.dumps({**result, "seconds": round(time.perf_counter() - t0, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
