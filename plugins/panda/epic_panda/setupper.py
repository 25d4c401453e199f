"""ePIC's Setupper plug-in: each job's output and log files carry their Rucio scope.

The PanDA server runs the VO's setupper on jobs JEDI generated, before they are activated
(``setupper_plugins = epic:epic_panda.setupper:EpicSetupperPlugin``). panda-server sets the
scope of output and log files only for VO ``atlas`` (from the dataset name); for ePIC the
scope is the one the task's dataset names (``epic:swf.<run>.E1_BNL.reco``), and the pilot
needs it: it is part of the file's Rucio path on the storage (``<scope>/<md5>/.../<name>``),
where the pilot moves the output and where Rucio expects the replica the Adder registers.
Like PanDA's dummy setupper, no DDM subscription is made (data placement is ePIC's Rucio
rules) and log files get a GUID.
"""

from __future__ import annotations

import uuid

from pandaserver.dataservice.setupper_plugin_base import SetupperPluginBase


def dataset_scope(dataset: str | None) -> str | None:
    """``scope:name`` -> scope; None for a name without scope."""
    if not dataset or dataset == "NULL" or ":" not in dataset:
        return None
    return dataset.split(":", 1)[0]


class EpicSetupperPlugin(SetupperPluginBase):
    def __init__(self, taskBuffer, jobs: list, logger, **params) -> None:
        SetupperPluginBase.__init__(self, taskBuffer, jobs, logger, params, {})

    def run(self) -> None:
        for job in self.jobs:
            for spec in job.Files:
                if spec.type not in ("output", "log"):
                    continue
                if spec.scope in (None, "", "NULL"):
                    scope = dataset_scope(spec.dataset) or dataset_scope(
                        spec.destinationDBlock)
                    if scope:
                        spec.scope = scope
                if spec.type == "log" and spec.GUID in (None, "", "NULL"):
                    spec.GUID = str(uuid.uuid4())

    def post_run(self) -> None:
        pass
