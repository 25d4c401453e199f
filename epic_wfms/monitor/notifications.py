"""Notifications (R10.12): rules on state changes, failure rate, latency SLO and backlog,
delivered as JSON to webhooks.

A threshold rule notifies when its condition starts to hold ("firing") and when it stops
("resolved"), not at every evaluation; a state_change rule notifies each new transition.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from epic_wfms.config import NotificationRule
from epic_wfms.lifecycle.job import JOB_UNSUCCESSFUL, JobStatus
from epic_wfms.monitor import queries as q
from epic_wfms.monitor.readstore import ReadStore
from epic_wfms.store.schema import JobRecord, StateTransitionRecord, utcnow

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    rule: str
    payload: dict[str, Any]
    status_code: int | None
    error: str | None = None


def failure_rate(session: Session, window_s: float) -> tuple[float | None, str]:
    since = utcnow() - timedelta(seconds=window_s)
    counts = dict(session.execute(select(JobRecord.status, func.count())
                                  .where(JobRecord.ended_at >= since)
                                  .group_by(JobRecord.status)).all())
    failed = sum(counts.get(status, 0) for status in JOB_UNSUCCESSFUL)
    ended = failed + counts.get(JobStatus.FINISHED, 0)
    if not ended:
        return None, "no job ended in the window"
    return failed / ended, f"{failed} of {ended} jobs failed in the last {window_s:g} s"


def latency_p95(session: Session, _window_s: float) -> tuple[float | None, str]:
    run = q.current_run(session)
    if run is None:
        return None, "no run yet"
    p95 = run["latency"]["end_to_end"]["p95_s"]
    return p95, f"run {run['number']}: end-to-end p95 {p95} s (produced to processed)"


def total_backlog(session: Session, _window_s: float) -> tuple[float | None, str]:
    backlog = q.backlog(session)
    total = sum(sum(v.values()) for v in backlog.values())
    return total, f"{total} STFs waiting or in flight: {backlog}"


MEASURES = {"failure_rate": failure_rate, "latency_slo": latency_p95, "backlog": total_backlog}


@dataclass
class Notifier:
    reads: ReadStore
    rules: list[NotificationRule]
    timeout_s: float = 5.0
    deliveries: list[Delivery] = field(default_factory=list)
    _firing: dict[str, bool] = field(default_factory=dict)
    _last_transition: int | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        with self.reads.session() as session:  # notify what happens from now on
            self._last_transition = session.scalar(select(func.max(StateTransitionRecord.id)))

    def evaluate(self) -> list[tuple[NotificationRule, dict[str, Any]]]:
        """Rules whose notification is due now, with their payloads."""
        due = []
        with self.reads.session() as session:
            new = session.scalars(select(StateTransitionRecord).where(
                StateTransitionRecord.id > (self._last_transition or 0))
                .order_by(StateTransitionRecord.id)).all()
            if new:
                self._last_transition = new[-1].id
            for rule in self.rules:
                if rule.kind == "state_change":
                    due += [(rule, self._transition_payload(rule, t)) for t in new
                            if not rule.states or t.to_state in rule.states]
                    continue
                value, text = MEASURES[rule.kind](session, rule.window_s)
                breaching = value is not None and value > rule.threshold
                if breaching != self._firing.get(rule.name, False):
                    self._firing[rule.name] = breaching
                    due.append((rule, {
                        "rule": rule.name, "kind": rule.kind,
                        "status": "firing" if breaching else "resolved", "value": value,
                        "threshold": rule.threshold, "summary": text,
                        "at": utcnow().isoformat()}))
        return due

    @staticmethod
    def _transition_payload(rule: NotificationRule, t: StateTransitionRecord) -> dict[str, Any]:
        return {"rule": rule.name, "kind": "state_change", "status": "event",
                "summary": f"{t.from_state}/{t.from_substate} -> {t.to_state}/{t.to_substate} "
                           f"({t.trigger}) run {t.run_number}",
                "transition": q.as_dict(t), "at": utcnow().isoformat()}

    def deliver(self, rule: NotificationRule, payload: dict[str, Any], attempts: int = 3
                ) -> Delivery:
        for attempt in range(attempts):
            try:
                response = httpx.post(rule.webhook, json=payload, timeout=self.timeout_s)
                delivery = Delivery(rule.name, payload, response.status_code, None if
                                    response.is_success else
                                    f"HTTP {response.status_code}: {response.text[:200]}")
                if response.is_success:
                    break
            except httpx.HTTPError as exc:
                delivery = Delivery(rule.name, payload, None, f"{type(exc).__name__}: {exc}")
            if attempt + 1 < attempts:
                time.sleep(0.2 * 2 ** attempt)
        if delivery.error:
            log.warning("notification %s to %s not delivered: %s", rule.name, rule.webhook,
                        delivery.error)
        self.deliveries.append(delivery)
        return delivery

    def run_once(self) -> list[Delivery]:
        return [self.deliver(rule, payload) for rule, payload in self.evaluate()]

    def start(self, period_s: float) -> None:
        def loop() -> None:
            while not self._stop.wait(period_s):
                try:
                    self.run_once()
                except Exception:  # a bad rule or store hiccup must not end notifications
                    log.exception("evaluating notification rules failed")

        self._thread = threading.Thread(target=loop, name="monitor-notify", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
