"""Suspend and resume processing by stream activity and by detector state (R3.2).

The stream is "idle" when no STF arrived for ``processing.idle_suspend_s``; processing is then
suspended (recorded, broadcast) and resumed by the next STF. State-driven suspension (e.g.
run/standby) is recorded here too, by the processing component.
"""

from __future__ import annotations

import threading
import time

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.store.schema import GateEventRecord
from epic_wfms.streaming.context import StreamingContext


def record_gate_event(
    ctx: StreamingContext, action: str, reason: str, run_number: int | None, backlog: int = 0
) -> None:
    """Persist and broadcast ``processing_suspended`` / ``processing_resumed``."""
    with ctx.db.session() as session:
        session.add(GateEventRecord(
            run_number=run_number, action=action, reason=reason, backlog=backlog
        ))
    ctx.publish(dest.EVENTS, f"processing_{action}", m.ProcessingGate(
        run_number=run_number, reason=reason, backlog=backlog,
    ), run_number)


class StreamActivity:
    def __init__(self, ctx: StreamingContext) -> None:
        self.ctx = ctx
        self._last_seen: float | None = None
        self._last_run: int | None = None
        self.idle = False
        self._lock = threading.Lock()

    def stf_seen(self, run_number: int | None) -> None:
        with self._lock:
            self._last_seen, self._last_run = time.monotonic(), run_number
            resumed, self.idle = self.idle, False
        if resumed:
            record_gate_event(self.ctx, "resumed", "stream active again", run_number)

    def check_idle(self) -> None:
        """Called periodically; suspends once when the stream has gone quiet."""
        limit = self.ctx.config.processing.idle_suspend_s
        with self._lock:
            quiet = self._last_seen is not None and time.monotonic() - self._last_seen > limit
            suspend = quiet and not self.idle
            self.idle = self.idle or quiet
        if suspend:
            record_gate_event(
                self.ctx, "suspended", f"no STF for more than {limit:g}s", self._last_run
            )
