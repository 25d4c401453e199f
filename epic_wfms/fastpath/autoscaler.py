"""Autoscaling of the standing pool from observed slice time and backlog (R3.9, R3.10).

Rule: a slice queued now waits about ``(backlog / size + 1) * slice_s``. Above the latency
target (or if the oldest queued slice already waited longer) the pool grows to the size that
clears the backlog within the target, at least by one. It shrinks by one only when nothing was
queued or processed for ``shrink_idle_s`` (growing reacts to one observation, shrinking needs
a sustained idle period: that asymmetry is the hysteresis). After any change,
``scale_cooldown_s`` passes before the next (damping). Always within pool min..max.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from epic_wfms.config import FastPathConfig


@dataclass(frozen=True)
class Observation:
    size: int
    backlog: int  # slices queued
    busy: int  # slices being processed
    slice_s: float | None  # recent mean time per slice on a worker
    oldest_wait_s: float  # the oldest queued slice has waited this long


@dataclass(frozen=True)
class Decision:
    to_size: int
    reason: str


class Autoscaler:
    def __init__(self, config: FastPathConfig) -> None:
        self.config = config
        self.last_change: float | None = None
        self.idle_since: float | None = None

    def changed(self, now: float) -> None:
        """A size change happened (decision or provisioning): start the cool-down."""
        self.last_change = now

    def decide(self, obs: Observation, now: float) -> Decision | None:
        c, pool = self.config, self.config.pool
        idle = obs.backlog == 0 and obs.busy == 0
        if not idle:
            self.idle_since = None
        elif self.idle_since is None:
            self.idle_since = now
        if self.last_change is not None and now - self.last_change < c.scale_cooldown_s:
            return None
        target = c.latency_target_s
        slice_s = obs.slice_s or 0.0
        expected = (obs.backlog / max(obs.size, 1) + 1) * slice_s
        if obs.size < pool.max and obs.backlog and (expected > target
                                                    or obs.oldest_wait_s > target):
            need = math.ceil((obs.backlog + obs.busy) * max(slice_s, 1e-3) / target)
            to = min(pool.max, max(obs.size + 1, need))
            return Decision(to, f"expected latency {expected:.2f}s (oldest queued "
                                f"{obs.oldest_wait_s:.2f}s) > target {target:g}s: backlog "
                                f"{obs.backlog}, {slice_s:.3f}s per slice")
        if obs.size > pool.min and idle and now - self.idle_since >= c.shrink_idle_s:
            return Decision(obs.size - 1, f"idle for {now - self.idle_since:.1f}s with nothing "
                                          f"queued ({slice_s:.3f}s per slice)")
        return None
