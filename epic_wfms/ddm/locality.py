"""Data locality (R4.4, R4.5): how a workflow gets its input to the site that processes it.

``replicate``: a rule brings the input to the site's disk first and the job starts when the
rule is OK (with Rucio and asynchronous transfers: on Rucio's RULE_OK event). ``remote``:
no rule; the job reads an available replica where it is (streaming input). The mode is
chosen per workflow (``ddm.locality`` in the configuration).
"""

from __future__ import annotations

from collections.abc import Callable

from epic_wfms.ddm.interface import DID, DataManagement, RuleInfo
from epic_wfms.errors import DataManagementError

Ready = Callable[[str | None, str | None], None]  # (path, error): exactly one is set


def when_done(ddm: DataManagement, rule: RuleInfo, callback: Callable[[RuleInfo], None]) -> None:
    """Call back once the rule has left REPLICATING: now, on the backend's event, or by poll."""
    if rule.state != "REPLICATING":
        callback(rule)
        return
    ddm.when_rule_done(rule.id, callback)


def remote_path(ddm: DataManagement, did: DID, prefer: str) -> str:
    """An available replica to read in place: the preferred RSE's, else any."""
    available = [r for r in ddm.list_replicas(did) if r.state == "A"]
    if not available:
        raise DataManagementError(
            f"no available replica of {did} to read remotely", "every replica is missing or bad",
            "check the file's replicas; a rule can recreate lost ones",
        )
    available.sort(key=lambda r: r.rse != prefer)
    return available[0].path


def stage_input(
    ddm: DataManagement, did: DID, rse: str, mode: str, activity: str, ready: Ready
) -> None:
    """Bring ``did`` within reach of a job at ``rse``, then call ``ready(path, error)``."""
    stage_inputs(ddm, [did], rse, mode, activity, lambda _did, path, error: ready(path, error))


def stage_inputs(
    ddm: DataManagement, dids: list[DID], rse: str, mode: str, activity: str,
    ready: Callable[[DID, str | None, str | None], None],
) -> None:
    """Bulk ``stage_input``: one rule call for the whole list and one catalog read for the
    rules already done; ``ready(did, path, error)`` is called for each DID as soon as its own
    rule is done."""
    if mode == "remote":
        for did in dids:
            ready(did, remote_path(ddm, did, rse), None)
        return
    rules = ddm.add_rules(dids, rse, copies=1, activity=activity)

    def done(info: RuleInfo, did: DID) -> None:
        if info.state == "OK":
            ready(did, ddm.local_path(did, rse), None)
        else:
            ready(did, None, f"rule {info.id} to {rse} is {info.state}: {info.error}")

    there = [did for did, rule in zip(dids, rules, strict=True) if rule.state == "OK"]
    paths = ddm.local_paths(there, rse) if there else {}
    for did, rule in zip(dids, rules, strict=True):
        if did in paths:
            ready(did, paths[did], None)
        else:
            when_done(ddm, rule, lambda info, did=did: done(info, did))
