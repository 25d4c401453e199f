"""Site-local transfer agent: completes Rucio rules between POSIX RSEs where no FTS runs.

For each lock of a rule still replicating, it copies an available source replica to the
destination PFN Rucio assigned, verifies the adler32 against the catalog, and reports the
replica AVAILABLE (or UNAVAILABLE with the reason) through the replica API. Rucio's own
lock logic then moves the lock and the rule to OK (or STUCK) and emits the rule events,
exactly as it does when FTS reports a finished transfer.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from epic_wfms.ddm.interface import DID
from epic_wfms.ddm.rucio.events import RucioEvent
from epic_wfms.ddm.rucio.pfn import file_path
from epic_wfms.model.checksum import file_adler32

if TYPE_CHECKING:
    from epic_wfms.ddm.rucio.backend import RucioDDM

log = logging.getLogger(__name__)
PENDING_LOCKS = ("REPLICATING", "R", "WAITING")
FAILURE_PREFIX = "epic-wfms transfer failed: "


class LocalTransferAgent:
    def __init__(self, ddm: RucioDDM) -> None:
        self.ddm = ddm

    def complete(self, rule_id: str) -> int:
        """Do every pending transfer of the rule; returns how many replicas were written."""
        client = self.ddm.client
        pending = [lock for lock in client.list_replica_locks(rule_id)
                   if str(lock["state"]).upper() in PENDING_LOCKS]
        errors: list[str] = []
        catalog: dict[DID, dict] = {}
        for lock in pending:
            did = DID(lock["scope"], lock["name"])
            if did not in catalog:
                catalog[did] = self.ddm.known_replicas(did) or self._catalog(did)
            state, error = self._copy(did, lock["rse"], catalog[did])
            client.update_replicas_states(
                lock["rse"], [{"scope": did.scope, "name": did.name, "state": state}]
            )
            if error:
                errors.append(error)
            else:
                self.ddm.mark_available(did, lock["rse"], self.ddm.pfn(did, lock["rse"]))
        if errors:  # the replica API takes no reason: keep it on the rule, for its owner
            client.update_replication_rule(rule_id, {"comment": FAILURE_PREFIX + errors[0]})
        return len(pending) - len(errors)

    def _catalog(self, did: DID) -> dict:
        """Checksum and available source paths of one file, in one catalog call."""
        rows = list(self.ddm.client.list_replicas(
            [{"scope": did.scope, "name": did.name}], schemes=["file"], all_states=True,
            resolve_archives=False,
        ))
        if not rows:
            return {"adler32": None, "sources": {}}
        row = rows[0]
        sources = {rse: file_path(pfns[0]) for rse, pfns in row.get("rses", {}).items()
                   if pfns and row.get("states", {}).get(rse) == "AVAILABLE"}
        return {"adler32": row.get("adler32"), "sources": sources}

    def _copy(self, did: DID, rse: str, catalog: dict) -> tuple[str, str | None]:
        """Copy and verify one replica: ('A', None) or ('U', why)."""
        sources = [path for source, path in catalog["sources"].items() if source != rse]
        if not sources:
            return "U", f"no available source of {did}"
        expected = catalog["adler32"]
        destination = Path(self.ddm.pfn(did, rse))
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sources[0], destination)
            found = file_adler32(destination)
        except OSError as error:
            return "U", f"transfer to {rse} failed: {error}"
        if found != expected:
            destination.unlink(missing_ok=True)
            return "U", f"checksum mismatch on {rse}: expected ad:{expected}, found ad:{found}"
        return "A", None


class SiteTransferService:
    """Stands in for FTS: completes a rule's transfers when Rucio queues them.

    Rucio announces each queued transfer (``transfer-queued`` with the rule id); this
    service copies and verifies in its own thread, so the event listener never blocks.
    ``sweep()`` catches up on rules queued while it was not listening.
    """

    def __init__(self, ddm: RucioDDM) -> None:
        self.ddm = ddm
        self.agent = LocalTransferAgent(ddm)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._seen: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="site-transfers", daemon=True)
        self.completed = 0

    def start(self) -> SiteTransferService:
        self._thread.start()
        return self

    def on_event(self, event: RucioEvent) -> None:
        if event.event_type == "transfer-queued" and event.payload.get("scope") == self.ddm.scope:
            self.submit(event.rule_id)

    def submit(self, rule_id: str | None) -> None:
        if rule_id and rule_id not in self._seen:
            self._seen.add(rule_id)
            self._queue.put(rule_id)

    def sweep(self) -> None:
        for rule in self.ddm.client.list_replication_rules(
            {"scope": self.ddm.scope, "state": "REPLICATING"}
        ):
            self.submit(rule["id"])

    def _run(self) -> None:
        while (rule_id := self._queue.get()) is not None:
            try:
                self.completed += self.agent.complete(rule_id)
            except Exception:
                log.exception("completing rule %s failed", rule_id)
                self._seen.discard(rule_id)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
