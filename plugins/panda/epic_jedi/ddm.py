"""ePIC's DDM interface for JEDI: what the refiner asks Rucio about ePIC datasets.

JEDI asks ``ddmIF.getInterface(vo, cloud)`` for a client and calls it with Rucio DIDs. ePIC's
STF subset datasets (``epic:swf.<run>.E1_BNL``) are plain datasets, open while the run is
taking data, so expanding one gives itself. With a Rucio client configured the replica
lookups go to Rucio; without one (loopback tests) there are no replicas yet, which is what
JEDI sees for an open dataset at run start.
"""

from __future__ import annotations

from typing import Any

from epic_jedi.naming import rucio_name, rucio_scope


class EpicDDMClient:
    """The per-VO client JEDI's TaskRefiner calls (values as JEDI's interface proxy returns)."""

    def __init__(self, rucio: Any | None = None) -> None:
        self.rucio = rucio

    def expandContainer(self, dataset_name: str) -> list[str]:
        if self.rucio is None:
            return [dataset_name]
        scope, name = rucio_scope(dataset_name), rucio_name(dataset_name)
        did = self.rucio.get_did(scope, name)
        if did["type"].upper() != "CONTAINER":
            return [f"{scope}:{name}"]
        return [f"{c['scope']}:{c['name']}" for c in self.rucio.list_content(scope, name)]

    def listDatasetReplicas(self, dataset_name: str) -> dict[str, list[dict]]:
        if self.rucio is None:
            return {}
        replicas = self.rucio.list_dataset_replicas(rucio_scope(dataset_name),
                                                    rucio_name(dataset_name))
        return {r["rse"]: [{"total": r["length"], "found": r["available_length"]}]
                for r in replicas}

    def listDatasets(self, dataset_name: str, ignorePandaDS: bool = True) -> list[str]:
        return self.expandContainer(dataset_name)

    def check_endpoint(self, rse: str) -> tuple[bool, tuple[bool, str | None]]:
        return True, (True, None)


class EpicDDMInterface:
    """``ddmIF`` for VO epic: one client for every cloud/working group."""

    def __init__(self, client: EpicDDMClient | None = None) -> None:
        self.client = client or EpicDDMClient()

    def getInterface(self, vo: str, group: str | None = None) -> EpicDDMClient | None:
        return self.client if vo == "epic" else None
