"""ePIC's DDM client for JEDI: what JEDI asks Rucio about ePIC datasets and their STFs.

Two ways JEDI reaches it:

- ``[ddm] modConfig = epic:1:epic_jedi.ddm:EpicJediDDMClient`` in ``panda_jedi.cfg``: JEDI's
  own ``DDMInterface`` starts the client in a child process and calls it over a pipe
  (``Interaction.CommandSendInterface``), as it runs ATLAS's Rucio client. The client reads
  Rucio's location and account from ``RUCIO_CONFIG`` (rucio-clients' own configuration).
- ``EpicDDMInterface`` in-process (``jedi_refine.py``), with or without a Rucio client.

ePIC's STF subset datasets (``epic:swf.<run>.E1_BNL``) are plain Rucio datasets, open while
the run takes data: JEDI's ContentsFeeder reads their files (one JEDI file per STF) and keeps
a ``runUntilClosed`` task waiting for more while the dataset is open; the JobBroker asks
which of a task's files have a replica at a queue's storage endpoints.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

from epic_jedi.naming import rucio_name, rucio_scope


class EpicDDMClient:
    """The DDM calls JEDI makes for VO epic; values as JEDI's interface proxy returns them,
    errors raised. Without a Rucio client there is no data yet (datasets open and empty)."""

    def __init__(self, rucio: Any | None = None) -> None:
        self._rucio = rucio

    @property
    def rucio(self) -> Any | None:
        return self._rucio

    # ---- datasets --------------------------------------------------------------------
    def expandContainer(self, dataset_name: str) -> list[str]:
        if self.rucio is None:
            return [dataset_name]
        scope, name = rucio_scope(dataset_name), rucio_name(dataset_name).rstrip("/")
        did = self.rucio.get_did(scope, name)
        if did["type"].upper() != "CONTAINER":
            return [f"{scope}:{name}"]
        return [f"{c['scope']}:{c['name']}" for c in self.rucio.list_content(scope, name)]

    def listDatasets(self, dataset_name: str, ignorePandaDS: bool = True) -> list[str]:
        return self.expandContainer(dataset_name)

    def getDatasetMetaData(self, dataset_name: str, ignore_missing: bool = False) -> dict:
        """Rucio's metadata plus JEDI's ``state``: ``open``, ``closed`` or ``missing``."""
        if self.rucio is None:
            return {"state": "open"}
        from rucio.common.exception import DataIdentifierNotFound

        try:
            meta = self.rucio.get_metadata(rucio_scope(dataset_name),
                                           rucio_name(dataset_name).rstrip("/"))
        except DataIdentifierNotFound:
            if ignore_missing:
                return {"state": "missing"}
            raise
        is_open = meta.get("is_open") and meta.get("did_type") != "CONTAINER"
        return {**meta, "state": "open" if is_open else "closed"}

    def getFilesInDataset(self, dataset_name: str, getNumEvents: bool = False,
                          skipDuplicate: bool = True, ignoreUnknown: bool = False,
                          longFormat: bool = False, lfn_only: bool = False) -> dict | set:
        """``{guid: {lfn, scope, filesize, checksum, ...}}`` of the dataset (one per STF)."""
        if self.rucio is None:
            return set() if lfn_only else {}
        from rucio.common.exception import DataIdentifierNotFound

        scope, name = rucio_scope(dataset_name), rucio_name(dataset_name).rstrip("/")
        try:
            rows = list(self.rucio.list_files(scope, name))
        except DataIdentifierNotFound:
            if ignoreUnknown:
                return {}
            raise
        if lfn_only:
            return {r["name"] for r in rows}
        files = {}
        for r in rows:
            guid = _guid(r)
            checksum = f"ad:{r['adler32']}" if r.get("adler32") else None
            files[guid] = {"lfn": r["name"], "scope": r["scope"], "guid": guid,
                           "filesize": r["bytes"], "fsize": r["bytes"], "checksum": checksum,
                           "chksum": checksum, "events": r.get("events")}
        return files

    def listDatasetReplicas(self, dataset_name: str, *args: Any, **kwargs: Any
                            ) -> dict[str, list[dict]]:
        if self.rucio is None:
            return {}
        replicas = self.rucio.list_dataset_replicas(rucio_scope(dataset_name),
                                                    rucio_name(dataset_name).rstrip("/"))
        return {r["rse"]: [{"total": r["length"], "found": r["available_length"]}]
                for r in replicas}

    def getAvailableFiles(self, dataset_spec: Any, site_endpoint_map: dict[str, list[str]],
                          site_mapper: Any, *args: Any, **kwargs: Any) -> dict[str, dict]:
        """Per PanDA queue, the task's files (JEDI FileSpecs) with an available replica at
        one of the queue's input endpoints (``localdisk``); ePIC reads STFs from disk only."""
        result = {site: {"localdisk": [], "localtape": [], "cache": [], "remote": [],
                         "all": set()} for site in site_endpoint_map}
        if self.rucio is None or not dataset_spec.Files:
            return result
        rses_of: dict[str, set[str]] = {}
        for row in self.rucio.list_replicas(
                [{"scope": rucio_scope(dataset_spec.datasetName),
                  "name": rucio_name(dataset_spec.datasetName).rstrip("/")}]):
            states = row.get("states") or {}
            rses_of[row["name"]] = {rse for rse in row.get("rses", {})
                                    if states.get(rse, "AVAILABLE") == "AVAILABLE"}
        for site, endpoints in site_endpoint_map.items():
            local = [f for f in dataset_spec.Files if rses_of.get(f.lfn, set()) & set(endpoints)]
            result[site]["localdisk"] = local
            result[site]["all"] = set(local)
        return result

    def freezeDataset(self, dataset_name: str, ignoreUnknown: bool = False) -> bool:
        """Close a task's output dataset at the end of the task (JEDI's post-processing)."""
        if self.rucio is None:
            return True
        from rucio.common.exception import DataIdentifierNotFound, UnsupportedOperation

        try:
            self.rucio.set_status(rucio_scope(dataset_name), rucio_name(dataset_name).rstrip("/"),
                                  open=False)
        except UnsupportedOperation:
            pass  # already closed
        except DataIdentifierNotFound:
            if not ignoreUnknown:
                raise
        return True

    def check_endpoint(self, rse: str) -> tuple[bool, str | None]:
        return True, None


def _guid(row: dict) -> str:
    """The file's GUID in JEDI's dashed form; files registered without one (ePIC's STFs)
    get a stable name-based UUID, so every cycle sees the same key for the same DID."""
    if not row.get("guid"):
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"rucio:{row['scope']}:{row['name']}"))
    return str(uuid.UUID(row["guid"]))


class EpicDDMInterface:
    """``ddmIF`` for VO epic, in-process: one client for every cloud/working group."""

    def __init__(self, client: EpicDDMClient | None = None) -> None:
        self.client = client or EpicDDMClient()

    def getInterface(self, vo: str, group: str | None = None) -> EpicDDMClient | None:
        return self.client if vo == "epic" else None


@functools.cache
def _jedi_client_class() -> type:
    """``EpicDDMClient`` as a JEDI DDM client (``DDMClientBase``), served over JEDI's pipe.

    Rucio answers map to JEDI's status codes: a value is ``SC_SUCCEEDED``, an unknown DID
    ``SC_FATAL`` (JEDI breaks the dataset), anything else (server down, timeout)
    ``SC_FAILED``, which JEDI treats as temporary and retries in its next cycle.
    """
    from pandajedi.jediddm.DDMClientBase import DDMClientBase

    class EpicJediDDMClient(DDMClientBase, EpicDDMClient):
        def __init__(self, con: Any) -> None:
            DDMClientBase.__init__(self, con)
            EpicDDMClient.__init__(self)

        @property
        def rucio(self) -> Any:
            if self._rucio is None:
                import os

                from rucio.client import Client

                if not os.environ.get("RUCIO_CONFIG"):
                    raise RuntimeError(
                        "no Rucio for VO epic: RUCIO_CONFIG is not set; JEDI's host needs a "
                        "rucio.cfg with a [client] section (host, auth, account)")
                self._rucio = Client()
            return self._rucio

    for name in JEDI_CALLS:
        setattr(EpicJediDDMClient, name, _with_status_codes(getattr(EpicDDMClient, name)))
    return EpicJediDDMClient


JEDI_CALLS = ("expandContainer", "listDatasets", "getDatasetMetaData", "getFilesInDataset",
              "listDatasetReplicas", "getAvailableFiles", "freezeDataset", "check_endpoint")


def _with_status_codes(method: Callable) -> Callable:
    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> tuple:
        from rucio.common.exception import DataIdentifierNotFound

        try:
            return self.SC_SUCCEEDED, method(self, *args, **kwargs)
        except DataIdentifierNotFound as exc:
            return self.SC_FATAL, f"{method.__name__}: not in Rucio: {exc}"
        except Exception as exc:
            return self.SC_FAILED, f"{method.__name__}: {type(exc).__name__}: {exc}"

    return call


def __getattr__(name: str) -> Any:
    if name == "EpicJediDDMClient":  # JEDI imports it by name (needs pandajedi)
        return _jedi_client_class()
    raise AttributeError(name)
