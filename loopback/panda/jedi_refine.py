"""One cycle of JEDI's TaskRefiner for VO ``epic``, in-process, with the PanDA venv's Python.

The JEDI daemon (process pools, endless loops) does not run here; this runs its refinement
step once, with JEDI's own code on the server's database (jedi_cycle.py does the same for
ContentsFeeder, JobGenerator, TaskCommando and PostProcessor):
``getTasksToRefine_JEDI`` (DEFT ``T_TASK`` -> ``JEDI_Tasks``), our ``EpicTaskRefiner``
(``TaskRefinerBase.extractCommon`` + ``doBasicRefine``: the task parameters validated and
turned into a ``JediTaskSpec`` and dataset specs) and ``registerTaskInOneShot_JEDI``.
Prints one JSON line per task: ``{"jediTaskID", "status", "error"}``.

Usage: PANDA_HOME=<server workdir> python jedi_refine.py <plugins dir>
"""

from __future__ import annotations

import json
import sys
import traceback


class _TaskBufferIF:
    """The server's TaskBuffer presented as JEDI's ``taskBufferIF`` (proxy per call)."""

    def __init__(self, task_buffer) -> None:
        self._tb = task_buffer

    def get_site_mapper(self):
        return self._tb.get_site_mapper()

    def __getattr__(self, name: str):
        def call(*args, **kwargs):
            with self._tb.proxyPool.get() as proxy:
                return getattr(proxy, name)(*args, **kwargs)

        return call


def refine_all(vo: str = "epic") -> list[dict]:
    from epic_jedi.task_refiner import EpicTaskRefiner
    from pandaserver.config import panda_config
    from pandaserver.taskbuffer.TaskBuffer import taskBuffer

    taskBuffer.init(panda_config.dbhost, panda_config.dbpasswd, nDBConnection=1)
    tb = _TaskBufferIF(taskBuffer)
    queues = tb.getWorkQueueMap()
    results = []
    for task_id, split_rule, status, _parent in tb.getTasksToRefine_JEDI(vo) or []:
        results.append(_refine_one(tb, EpicTaskRefiner, queues, task_id, split_rule, status))
    return results


def _refine_one(tb, refiner_cls, queues, task_id, split_rule, status) -> dict:
    from epic_jedi.ddm import EpicDDMInterface
    from pandacommon.pandalogger.LogWrapper import LogWrapper
    from pandacommon.pandalogger.PandaLogger import PandaLogger
    from pandaserver.taskbuffer.JediTaskSpec import JediTaskSpec

    params_json = tb.getTaskParamsWithID_JEDI(task_id)
    params = json.loads(params_json)
    impl = refiner_cls(tb, EpicDDMInterface())
    try:
        impl.initializeRefiner(LogWrapper(PandaLogger().getLogger("TaskRefiner"),
                                          f"< jediTaskID={task_id} >"))
        impl.oldTaskStatus = status
        impl.extractCommon(task_id, params, queues, split_rule)
        impl.doRefine(task_id, params)
    except Exception as exc:  # JEDI marks such tasks broken, with the reason
        spec = impl.taskSpec or JediTaskSpec()
        spec.jediTaskID = task_id
        spec.status = "tobroken"
        spec.setErrDiag(f"refine failed: {exc}", True)
        tb.updateTask_JEDI(spec, {"jediTaskID": task_id}, oldStatus=[status])
        return {"jediTaskID": task_id, "status": "tobroken", "error": str(exc),
                "trace": traceback.format_exc()[-800:]}
    ok, new_status = tb.registerTaskInOneShot_JEDI(
        task_id, impl.taskSpec, impl.inMasterDatasetSpec, impl.inSecDatasetSpecList,
        impl.outDatasetSpecList, impl.outputTemplateMap, impl.jobParamsTemplate,
        json.dumps(impl.updatedTaskParams or params), impl.unmergeMasterDatasetSpec,
        impl.unmergeDatasetSpecMap, params.get("uniqueTaskName", False), status,
        impl.in_content_dataset_specs)
    return {"jediTaskID": task_id, "status": new_status if ok else "registration failed",
            "error": None if ok else "registerTaskInOneShot_JEDI failed"}


if __name__ == "__main__":
    sys.path.insert(0, sys.argv[1])
    for result in refine_all(sys.argv[2] if len(sys.argv) > 2 else "epic"):
        print(json.dumps(result))
