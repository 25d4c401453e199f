"""What the fast path needs of a standing worker pool, whoever provides the workers.

The embedded provider (``worker_pool.FastPathPool``) runs each worker as a consumer in this
process with its own payload process. A pool provisioned through iDDS's prompt service and
Harvester (workers as pilot jobs taking TF slices over the broker) implements the same
contract. ``fastpath.pool.provider`` chooses (``build_pool``). ``PoolDuties`` is what both
do the same way: follow run control, run their duties every ``TICK_S``, say when they are
ready and drained.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Protocol

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.fastpath.autoscaler import Autoscaler
from epic_wfms.store.schema import FastPathScalingRecord

if TYPE_CHECKING:
    from epic_wfms.streaming.context import StreamingContext

log = logging.getLogger(__name__)
TICK_S = 0.5


class SlicePool(Protocol):
    def subscribe(self) -> None:
        """Follow run control: provision at ``run_imminent``, drain after ``end_run``."""
        ...

    def provision(self, run_number: int) -> None:
        """The run's target number of workers (idempotent for a redelivered request)."""
        ...

    def end_of_run(self, run_number: int) -> None:
        """The run ended: drain once its slices are done."""
        ...

    def activity(self, run_number: int | None = None) -> None:
        """Slices were queued: the pool is not idle (delays the drain)."""
        ...

    @property
    def size(self) -> int:
        """Workers alive and taking slices now."""
        ...

    def wait_ready(self, timeout: float) -> bool:
        """True once the run's target size of workers registered."""
        ...

    def wait_drained(self, timeout: float) -> bool:
        """True once every worker exited after the run's slices were done."""
        ...

    def stop(self) -> None:
        """Stop the pool's duties and its workers (process end)."""
        ...


class PoolDuties:
    """The part of a pool every provider shares. A provider sets up its workers in
    ``provision`` and ``tick`` (called every ``TICK_S`` on the pool's own thread), reports
    ``size``, and calls ``follow_run_control``/``start_duties`` from its ``subscribe`` and
    ``stop_duties`` from its ``stop``."""

    thread_name = "fastpath-pool"

    def __init__(self, ctx: StreamingContext) -> None:
        self.ctx = ctx
        self.config = ctx.config.fastpath
        self.autoscaler = Autoscaler(self.config)
        self.run_number: int | None = None
        self.draining = False
        self.drained = threading.Event()
        self.last_activity = time.monotonic()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)

    # what a provider implements
    size: int

    def provision(self, run_number: int) -> None:
        raise NotImplementedError

    def tick(self) -> None:
        raise NotImplementedError

    # the shared part
    def follow_run_control(self) -> None:
        self.ctx.bus.subscribe(dest.RUN_CONTROL, "fastpath-pool", self.on_run_control,
                               msg_types={"run_imminent", "end_run"})

    def on_run_control(self, message: m.Message) -> None:
        run = message.body.run_number
        if message.msg_type == "run_imminent":
            self.provision(run)
        elif message.msg_type == "end_run":
            self.end_of_run(run)

    def end_of_run(self, run_number: int) -> None:
        if run_number == self.run_number:
            with self._lock:
                self.draining = True
                self.last_activity = time.monotonic()

    def activity(self, _run_number: int | None = None) -> None:
        self.last_activity = time.monotonic()

    def wait_ready(self, timeout: float) -> bool:
        """True once the run's target size of workers registered (after run_imminent)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run_number is not None and self.size >= self.config.pool.target:
                return True
            time.sleep(0.05)
        return False

    def wait_drained(self, timeout: float) -> bool:
        return self.drained.wait(timeout)

    def record_scaling(self, before: int, to: int, reason: str, backlog: int,
                       slice_s: float | None) -> None:
        """A size change (provisioning or an autoscaling decision): in the store and on the
        bus, and the autoscaler's cool-down starts."""
        self.autoscaler.changed(time.monotonic())
        with self.ctx.db.session() as session:
            session.add(FastPathScalingRecord(
                run_number=self.run_number, from_size=before, to_size=to, backlog=backlog,
                slice_s=slice_s, reason=reason))
        self.ctx.publish(dest.FASTPATH_POOL, "pool_scaled", m.PoolScaled(
            run_number=self.run_number, from_size=before, to_size=to, backlog=backlog,
            slice_s=slice_s, reason=reason), self.run_number)

    def start_duties(self) -> None:
        self._thread.start()

    def stop_duties(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self.tick()
            except Exception:  # the pool must keep watching its workers
                log.exception("fast-path pool duty failed (%s)", type(self).__name__)


def build_pool(ctx: StreamingContext) -> SlicePool:
    """The configured provider's pool (``fastpath.pool.provider``)."""
    if ctx.config.fastpath.pool.provider == "idds":
        from epic_wfms.fastpath.idds_pool import IddsSlicePool

        return IddsSlicePool(ctx)
    from epic_wfms.fastpath.worker_pool import FastPathPool

    return FastPathPool(ctx)
