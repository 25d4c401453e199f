"""TaskRefiner for VO ``epic``: ePIC defaults applied before JEDI's generic refinement.

Configured in ``panda_jedi.cfg`` ``[taskrefine] modConfig`` as
``epic:any:epic_jedi.task_refiner:EpicTaskRefiner``. JEDI calls ``extractCommon`` then
``doRefine`` for every task of the VO; the base class (``TaskRefinerBase``) turns the task
parameters into a ``JediTaskSpec`` plus dataset specs and validates them.
"""

from __future__ import annotations

from pandajedi.jedirefine.TaskRefinerBase import TaskRefinerBase

from epic_jedi.naming import rucio_scope

DEFAULT_RAM_MB_PER_CORE = 2000
PROMPT_PROCESSING = "epic_prompt"  # processingType of streaming (prompt) reconstruction


class EpicTaskRefiner(TaskRefinerBase):
    def __init__(self, taskBufferIF, ddmIF):
        TaskRefinerBase.__init__(self, taskBufferIF, ddmIF)

    def extractCommon(self, jediTaskID, taskParamMap, workQueueMapper, splitRule):
        """ePIC defaults: working group as cloud, RAM per core, DDM scope from the dataset."""
        if "cloud" not in taskParamMap and "workingGroup" in taskParamMap:
            taskParamMap["cloud"] = taskParamMap["workingGroup"]
        taskParamMap.setdefault("ramCount", DEFAULT_RAM_MB_PER_CORE)
        taskParamMap.setdefault("ramCountUnit", "MBPerCore")
        taskParamMap["cloudAsVO"] = True
        if taskParamMap.get("processingType") == PROMPT_PROCESSING:
            taskParamMap.setdefault("runUntilClosed", True)  # the STF subset stays open
            # every STF is processed as it arrives: no scout jobs holding the run back
            taskParamMap.setdefault("skipScout", True)
        for item in taskParamMap.get("jobParameters", []):
            if isinstance(item, dict) and item.get("dataset") and "scope" not in item:
                item["scope"] = rucio_scope(item["dataset"])
        self.updatedTaskParams = taskParamMap
        TaskRefinerBase.extractCommon(self, jediTaskID, taskParamMap, workQueueMapper, splitRule)

    def doRefine(self, jediTaskID, taskParamMap):
        """JEDI's generic refinement (datasets, templates, split rules) of the ePIC task."""
        self.doBasicRefine(taskParamMap)
        return self.SC_SUCCEEDED
