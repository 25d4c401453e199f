"""Data carousel (R4.6): stage tape-resident inputs to disk in bounded batches.

At most ``batch_size`` files are requested (or staged and not yet consumed) at a time; each
``consumed()`` frees a slot and the next file is requested, so disk use stays bounded
while the tape keeps streaming. Each request is a rule from the tape RSE to the disk RSE
(activity "Staging"); the state survives in the DDM, so a restarted carousel that is given
the same inputs does not request anything twice (rules are idempotent).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from epic_wfms.ddm.interface import DID, DataManagement, RuleInfo
from epic_wfms.ddm.locality import when_done
from epic_wfms.errors import DataManagementError


@dataclass
class CarouselStats:
    requested: list[str] = field(default_factory=list)
    staged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    max_in_flight: int = 0


class DataCarousel:
    ACTIVITY = "Staging"

    def __init__(self, ddm: DataManagement, inputs: list[DID], disk_rse: str,
                 batch_size: int) -> None:
        if batch_size < 1:
            raise DataManagementError(
                f"carousel batch size {batch_size} is not positive",
                "a carousel must stage at least one file at a time", "use batch_size >= 1",
            )
        self.ddm, self.disk_rse, self.batch_size = ddm, disk_rse, batch_size
        self._waiting: deque[DID] = deque(inputs)
        self._in_flight: set[DID] = set()
        self._ready: deque[tuple[DID, str]] = deque()
        self._cond = threading.Condition()
        self.stats = CarouselStats()

    def start(self) -> DataCarousel:
        self._top_up()
        return self

    def _top_up(self) -> None:
        """Request files until the batch is full (requests, staged and unconsumed count)."""
        while True:
            with self._cond:
                if not self._waiting or len(self._in_flight) >= self.batch_size:
                    return
                did = self._waiting.popleft()
                self._in_flight.add(did)
                self.stats.max_in_flight = max(self.stats.max_in_flight, len(self._in_flight))
                self.stats.requested.append(did.name)
            rule = self.ddm.add_rule(did, self.disk_rse, copies=1, activity=self.ACTIVITY)
            when_done(self.ddm, rule, lambda info, did=did: self._staged(did, info))

    def _staged(self, did: DID, rule: RuleInfo) -> None:
        with self._cond:
            if rule.state == "OK":
                self._ready.append((did, self.ddm.local_path(did, self.disk_rse)))
                self.stats.staged.append(did.name)
            else:
                self._in_flight.discard(did)
                self.stats.failed[did.name] = f"rule {rule.id} {rule.state}: {rule.error}"
            self._cond.notify_all()
        if rule.state != "OK":
            self._top_up()

    def next_ready(self, timeout: float = 60) -> tuple[DID, str] | None:
        """The next staged input (DID, local path); None when every input is done."""
        with self._cond:
            finished = self._cond.wait_for(
                lambda: self._ready or (not self._waiting and not self._in_flight), timeout)
            if not finished:
                raise DataManagementError(
                    f"no staged input within {timeout} s", f"{len(self._in_flight)} requests "
                    f"pending on {self.disk_rse}", "check the staging rules' transfers",
                )
            return self._ready.popleft() if self._ready else None

    def consumed(self, did: DID) -> None:
        """The job is done with ``did``: its slot goes to the next tape file."""
        with self._cond:
            self._in_flight.discard(did)
        self._top_up()
