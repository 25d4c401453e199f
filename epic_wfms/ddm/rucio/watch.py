"""Act when a rule is done: Rucio's RULE_OK event is the trigger, a slow poll the safety net.

Rucio sends no event when a rule gets STUCK and a broker can drop a message, so rules still
awaited after ``poll_s`` are looked up directly; callbacks run once, in either case.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from epic_wfms.ddm.interface import RuleInfo
from epic_wfms.ddm.rucio.events import RucioEvent

if TYPE_CHECKING:
    from epic_wfms.ddm.rucio.backend import RucioDDM

log = logging.getLogger(__name__)
RuleCallback = Callable[[RuleInfo], None]


class RuleWatcher:
    def __init__(self, ddm: RucioDDM, poll_s: float = 2.0) -> None:
        self.ddm, self.poll_s = ddm, poll_s
        self._waiting: dict[str, tuple[float, list[RuleCallback]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="rule-watch", daemon=True)
        self.fired_by_event = 0
        self.fired_by_poll = 0

    def when_done(self, rule_id: str, callback: RuleCallback) -> None:
        with self._lock:  # checked and started under the lock: archivers and processing
            _, callbacks = self._waiting.setdefault(rule_id, (time.monotonic(), []))
            callbacks.append(callback)  # call this from several threads at once
            if self._poller.ident is None and not self._stop.is_set():
                self._poller.start()
        info = self.ddm.rule(rule_id)  # it may have finished before we started waiting
        if info.state != "REPLICATING":
            self._fire(info, by_event=False)

    def on_event(self, event: RucioEvent) -> None:
        if event.event_type == "rule_ok" and event.rule_id in self._waiting:
            self._fire(self.ddm.rule(event.rule_id), by_event=True)

    def _fire(self, info: RuleInfo, by_event: bool) -> None:
        with self._lock:
            entry = self._waiting.pop(str(info.id), None)
        if entry is None:
            return  # already fired
        if by_event:
            self.fired_by_event += 1
        else:
            self.fired_by_poll += 1
        for callback in entry[1]:
            try:
                callback(info)
            except Exception:
                log.exception("callback for rule %s failed", info.id)

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s / 2):
            now = time.monotonic()
            with self._lock:
                due = [rid for rid, (since, _) in self._waiting.items()
                       if now - since > self.poll_s]
            for rule_id in due:
                try:
                    info = self.ddm.rule(rule_id)
                except Exception:
                    log.exception("polling rule %s failed", rule_id)
                    continue
                if info.state != "REPLICATING":
                    self._fire(info, by_event=False)

    def stop(self) -> None:
        self._stop.set()
