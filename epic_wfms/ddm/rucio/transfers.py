"""Site-local transfer agent: completes Rucio rules between POSIX RSEs where no FTS runs.

For each lock of a rule still replicating, it copies an available source replica to the
destination PFN Rucio assigned, verifies the adler32 against the catalog, and reports the
replica AVAILABLE (or UNAVAILABLE with the reason) through the replica API. Rucio's own
lock logic then moves the lock and the rule to OK (or STUCK) and emits the rule events,
exactly as it does when FTS reports a finished transfer.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from epic_wfms.ddm.interface import DID
from epic_wfms.model.checksum import file_adler32

if TYPE_CHECKING:
    from epic_wfms.ddm.rucio.backend import RucioDDM

PENDING_LOCKS = ("REPLICATING", "R", "WAITING")
FAILURE_PREFIX = "epic-wfms transfer failed: "


class LocalTransferAgent:
    def __init__(self, ddm: RucioDDM) -> None:
        self.ddm = ddm

    def complete(self, rule_id: str) -> int:
        """Do every pending transfer of the rule; returns how many replicas were written."""
        done, errors = 0, []
        client = self.ddm.client
        for lock in client.list_replica_locks(rule_id):
            if str(lock["state"]).upper() not in PENDING_LOCKS:
                continue
            did = DID(lock["scope"], lock["name"])
            state, error = self._copy(did, lock["rse"])
            client.update_replicas_states(
                lock["rse"], [{"scope": did.scope, "name": did.name, "state": state}]
            )
            done += state == "A"
            errors += [error] if error else []
        if errors:  # the replica API takes no reason: keep it on the rule, for its owner
            client.update_replication_rule(rule_id, {"comment": FAILURE_PREFIX + errors[0]})
        return done

    def _copy(self, did: DID, rse: str) -> tuple[str, str | None]:
        """Copy and verify one replica: ('A', None) or ('U', why)."""
        replicas = self.ddm.list_replicas(did)
        sources = [r for r in replicas if r.state == "A" and r.rse != rse]
        if not sources:
            return "U", f"no available source of {did}"
        expected = self.ddm.client.get_did(did.scope, did.name).get("adler32")
        destination = Path(self.ddm.pfn(did, rse))
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sources[0].path, destination)
            found = file_adler32(destination)
        except OSError as error:
            return "U", f"transfer to {rse} failed: {error}"
        if found != expected:
            destination.unlink(missing_ok=True)
            return "U", f"checksum mismatch on {rse}: expected ad:{expected}, found ad:{found}"
        return "A", None
