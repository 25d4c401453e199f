"""Express lane (R3.11): alarm-grade work jumps the queue; alarms are published at once.

Detector-status slices travel on their own queue (``/queue/epic.fastpath.express``). Every
worker consumes both queues, but its payload runs one slice at a time through an
``ExpressFirst`` gate: when the payload frees up, a waiting express slice always goes before
a waiting normal one. An express slice therefore waits for at most the slice in progress,
however long the normal backlog is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.streaming.context import StreamingContext


class ExpressFirst:
    """A one-at-a-time gate where express holders go before normal ones."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._express_waiting = 0

    @contextmanager
    def turn(self, express: bool) -> Iterator[None]:
        with self._cond:
            self._express_waiting += express
            try:
                self._cond.wait_for(
                    lambda: not self._busy and (express or self._express_waiting == 0))
            finally:
                self._express_waiting -= express
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()


def publish_alarms(ctx: StreamingContext, work: m.SliceWork, anomalies: list[dict]) -> None:
    """One ``alarm`` notification per anomaly on ``/topic/epic.alarms``."""
    for anomaly in anomalies:
        ctx.publish(dest.ALARMS, "alarm", m.Alarm(
            run_number=work.run_number, slice_name=work.slice_name,
            stf_filename=work.stf_filename, event=anomaly.get("event"), kind=anomaly["kind"],
            value=anomaly["value"], threshold=anomaly["threshold"],
            detail=anomaly.get("detail", ""),
        ), work.run_number)
