"""The standing worker pool: provisioned at run_imminent, drained at end_run (R3.9).

A worker registers (store row + ``worker_registered``), consumes the express and the normal
slice queue as a competing consumer, and keeps one payload process for all its slices. A
worker whose payload dies is declared dead: its slice goes back to the queue (bounded retry)
and the pool starts a replacement. The pool's size follows the autoscaler between
``pool.min`` and ``pool.max``; at end_run, once the run's slices are done, every worker
drains and exits. In the embedded backend a worker is a consumer in this process plus its
payload process; with PanDA it would be a pilot job provisioned through iDDS/Harvester.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import update

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.fastpath import slices
from epic_wfms.fastpath.autoscaler import Observation
from epic_wfms.fastpath.express import ExpressFirst
from epic_wfms.fastpath.pool import PoolDuties
from epic_wfms.fastpath.results import publish_failure, record_result
from epic_wfms.fastpath.runners import PayloadDied, start_payload
from epic_wfms.lifecycle.fastpath import WORKER, SliceStatus, WorkerStatus
from epic_wfms.store.schema import FastPathWorkerRecord, utcnow
from epic_wfms.streaming.context import StreamingContext
from epic_wfms.streaming.screening import daq_file

log = logging.getLogger(__name__)


def requeue(ctx: StreamingContext, work: m.SliceWork) -> None:
    queue = dest.FASTPATH_EXPRESS if work.express else dest.FASTPATH_SLICES
    ctx.publish(queue, "tf_slice", work, work.run_number)


class SliceWorker:
    def __init__(self, pool: FastPathPool, name: str, run_number: int | None) -> None:
        self.pool, self.ctx, self.name, self.run_number = pool, pool.ctx, name, run_number
        self.config = pool.ctx.config.fastpath
        self.gate = ExpressFirst()
        self.dead = False
        self.buried = False  # its death was handled (replacement started)
        self.retired = False
        self._inflight = 0
        self._lock = threading.Condition()
        self.payload = start_payload(self.config.runner, self.config.payload.calibration_channels)
        self._subscriptions = [(dest.FASTPATH_EXPRESS, f"{name}.express"),
                               (dest.FASTPATH_SLICES, f"{name}.slices")]

    def start(self) -> None:
        with self.ctx.db.session() as session:
            session.merge(FastPathWorkerRecord(
                name=self.name, run_number=self.run_number, pid=self.payload.pid,
                status=WORKER.check(None, WorkerStatus.REGISTERED), registered_at=utcnow(),
                slices_done=0))
        self.ctx.publish(dest.FASTPATH_POOL, "worker_registered", m.WorkerNews(
            worker=self.name, run_number=self.run_number, pid=self.payload.pid,
            detail=f"payload ready (init {self.payload.init_s}s)"), self.run_number)
        for destination, subscription in self._subscriptions:
            self.ctx.bus.subscribe(destination, subscription, self.on_slice,
                                   msg_types={"tf_slice"}, track=False)

    @property
    def busy(self) -> bool:
        return self._inflight > 0

    # -- one slice ---------------------------------------------------------------------------
    def on_slice(self, message: m.Message) -> None:
        work: m.SliceWork = message.body
        daq_file(self.ctx.config, work.path, None, f"tf_slice {work.slice_name}")
        with self._lock:
            leaving = self.dead or self.retired
            if not leaving:
                self._inflight += 1
        if leaving:  # delivered while it retires: never claimed, given to a live worker
            requeue(self.ctx, work)
            return
        try:
            if self.dead:
                requeue(self.ctx, work)  # never claimed: give it to a live worker
                return
            with self.gate.turn(work.express):
                if self.dead:
                    requeue(self.ctx, work)
                    return
                self._process(work)
        finally:
            with self._lock:
                self._inflight -= 1
                self._lock.notify_all()

    def _process(self, work: m.SliceWork) -> None:
        attempt = slices.claim(self.ctx.db, work.slice_name, self.name)
        if attempt is None:
            return  # done, being done elsewhere, or failed: a duplicate changes nothing
        request = {"slice": {"name": work.slice_name, "path": work.path,
                             "first_tf": work.first_tf, "tf_count": work.tf_count,
                             "kind": work.kind},
                   "params": self.config.payload.model_dump(exclude={"calibration_channels"})}
        try:
            reply = self.payload.run(request, self.config.slice_timeout_s)
        except PayloadDied as error:
            self.dead = True
            self._failed(work, attempt, str(error))
            self.pool.worker_died(self, str(error))
            return
        if not reply.get("ok"):
            self._failed(work, attempt, reply.get("error", "payload failed"))
            return
        try:
            record_result(self.ctx, work, self.name, attempt, reply)
        except Exception as error:  # never leave a slice in processing behind
            log.exception("recording the result of %s failed", work.slice_name)
            self._failed(work, attempt, f"recording the result failed: {error}")

    def _failed(self, work: m.SliceWork, attempt: int, error: str) -> None:
        status = slices.release(self.ctx.db, work.slice_name, self.name, attempt, error,
                                self.config.max_attempts)
        if status is None:
            return
        log.warning("slice %s attempt %d on %s failed: %s", work.slice_name, attempt, self.name,
                    error)
        publish_failure(self.ctx, work, self.name, attempt, status, error)
        if status == SliceStatus.QUEUED:
            requeue(self.ctx, work)

    # -- end of life -------------------------------------------------------------------------
    def retire(self, status: WorkerStatus, detail: str, wait: bool = True) -> None:
        """Stop consuming, let the slice in hand finish, end the payload, record why. A
        worker never leaves with a slice: one it still holds afterwards (it took it as it
        was retired) goes back to the queue."""
        with self._lock:
            if self.retired:
                return
            self.retired = True  # from now on a delivered slice is requeued, never claimed
        for destination, subscription in self._subscriptions:
            with contextlib.suppress(ValueError):  # already gone
                self.ctx.bus.unsubscribe(destination, subscription)
        if wait:
            with self._lock:
                self._lock.wait_for(lambda: self._inflight == 0,
                                    timeout=self.config.slice_timeout_s)
        self.payload.close()
        self.pool.release_held([self.name], f"worker {self.name} retired: {detail}")
        with self.ctx.db.session() as session:
            session.execute(update(FastPathWorkerRecord).where(
                FastPathWorkerRecord.name == self.name,
                WORKER.where(FastPathWorkerRecord.status, status),
            ).values(status=status, ended_at=utcnow(), detail=detail))
        msg_type = "worker_replaced" if status == WorkerStatus.DEAD else "worker_exited"
        self.ctx.publish(dest.FASTPATH_POOL, msg_type, m.WorkerNews(
            worker=self.name, run_number=self.run_number, pid=self.payload.pid, detail=detail),
            self.run_number)


class FastPathPool(PoolDuties):
    def __init__(self, ctx: StreamingContext) -> None:
        super().__init__(ctx)
        self.workers: dict[str, SliceWorker] = {}
        self._numbers = itertools.count(1)

    def subscribe(self) -> None:
        self.follow_run_control()
        self.start_duties()

    # -- size ----------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        with self._lock:
            return sum(1 for w in self.workers.values() if not w.dead and not w.retired)

    def provision(self, run_number: int) -> None:
        """At run_imminent: the run's target size (idempotent for a redelivered message)."""
        with self._lock:
            if self.run_number == run_number and not self.drained.is_set():
                return
            self.run_number, self.draining = run_number, False
            self.drained.clear()
            before = self.size
            self._resize(self.config.pool.target, "provisioned at run_imminent", backlog=0,
                         slice_s=None, before=before)

    def _resize(self, to: int, reason: str, backlog: int, slice_s: float | None,
                before: int) -> None:
        with self._lock:
            self._start_workers(to - self.size)
            idle = [w for w in self.workers.values() if not (w.dead or w.retired)]
            idle.sort(key=lambda w: w.busy)  # retire idle workers first
            for worker in idle[:max(self.size - to, 0)]:
                threading.Thread(target=worker.retire, daemon=True, args=(
                    WorkerStatus.EXITED, f"scaled down: {reason}")).start()
        self.record_scaling(before, to, reason, backlog, slice_s)

    def _start_workers(self, count: int) -> None:
        """Start ``count`` workers, their payloads calibrating in parallel."""
        if count <= 0:
            return
        names = [f"fpw-{self.run_number or 0:06d}-{next(self._numbers):03d}"
                 f"@{socket.gethostname()}:{os.getpid()}" for _ in range(count)]
        with ThreadPoolExecutor(max_workers=count) as starting:
            workers = list(starting.map(
                lambda name: SliceWorker(self, name, self.run_number), names))
        for worker in workers:
            self.workers[worker.name] = worker
            worker.start()

    def worker_died(self, worker: SliceWorker, reason: str) -> None:
        """Replace a dead worker (R3.9) and give its slices back to the queue."""
        with self._lock:
            if worker.buried or worker.retired:
                return  # the worker and the pool's liveness check may both report a death
            worker.buried = worker.dead = True
            threading.Thread(target=worker.retire, args=(WorkerStatus.DEAD, reason),
                             daemon=True).start()
            if not self._stop.is_set() and not self.drained.is_set():
                self._start_workers(1)
        self.release_held([worker.name], f"worker died: {reason}")

    def release_held(self, workers: list[str], reason: str) -> None:
        """Slices still ``processing`` by ``workers`` (which hold none any more) go back to
        the queue, or fail after max_attempts."""
        for record in slices.held_by(self.ctx.db, workers):
            status = slices.release(self.ctx.db, record.name, record.worker, record.attempts,
                                    reason, self.config.max_attempts)
            if status == SliceStatus.QUEUED:
                requeue(self.ctx, slices.slice_work(record))

    # -- duties --------------------------------------------------------------------------------
    def tick(self) -> None:
        for worker in list(self.workers.values()):
            if not worker.dead and not worker.retired and not worker.payload.alive():
                self.worker_died(worker, f"payload process {worker.payload.pid} ended")
        if self.run_number is None or self.drained.is_set():
            return
        if processing_elsewhere := self._orphaned_slices():
            self.release_held(processing_elsewhere, "its worker left the pool")
        queued, processing, oldest_wait = slices.open_count(self.ctx.db, self.run_number)
        if queued or processing:
            self.last_activity = time.monotonic()
        if self.draining:
            if not queued and not processing and (
                    time.monotonic() - self.last_activity >= self.config.drain_grace_s):
                self.drain()
            return
        slice_s = slices.recent_slice_s(self.ctx.db, self.run_number)
        obs = Observation(size=self.size, backlog=queued, busy=processing, slice_s=slice_s,
                          oldest_wait_s=oldest_wait)
        decision = self.autoscaler.decide(obs, time.monotonic())
        if decision is not None:
            self._resize(decision.to_size, decision.reason, queued, slice_s, obs.size)

    def _orphaned_slices(self) -> list[str]:
        """Workers of this pool that hold a slice but no longer consume (retired or dead):
        the drain must never wait on a slice nobody holds."""
        with self._lock:
            gone = [w.name for w in self.workers.values()
                    if (w.retired or w.dead) and not w.busy]
        return [r.worker for r in slices.held_by(self.ctx.db, gone)] if gone else []

    def drain(self) -> None:
        """End of run: every worker finishes and exits."""
        with self._lock:
            live = [w for w in self.workers.values() if not (w.dead or w.retired)]
            for worker in live:
                worker.retire(WorkerStatus.EXITED, f"drained at end of run {self.run_number}")
            self.drained.set()
        log.info("fast-path pool drained for run %s (%d workers)", self.run_number, len(live))

    def stop(self) -> None:
        self.stop_duties()
        for worker in list(self.workers.values()):
            if not worker.retired:
                worker.retire(WorkerStatus.EXITED, "stopped with the orchestrator", wait=False)
