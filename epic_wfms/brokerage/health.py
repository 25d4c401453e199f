"""Site health: a site going bad is avoided within minutes and retried later (R12.1).

Outcomes of jobs are recorded per site. When, within ``window_s``, at least ``min_failures``
jobs failed and they are at least ``failure_ratio`` of the outcomes, the site is *avoided*
for ``backoff_s``; then it is *probing*: brokerage may use it again (with a penalty). A
success while probing clears it; a failure while probing avoids it again, for twice as long
(up to ``max_backoff_s``). Declared downtimes exclude a site outright, and so does an
operator taking the site *offline* (``set_offline``) until it is set online again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

OK, AVOIDED, PROBING, DOWNTIME, OFFLINE = "ok", "avoided", "probing", "downtime", "offline"
FOREVER = float("inf")


@dataclass(slots=True)
class HealthPolicy:
    window_s: float = 300.0
    min_failures: int = 5
    failure_ratio: float = 0.5
    backoff_s: float = 600.0
    max_backoff_s: float = 4 * 3600.0
    probing_penalty: float = 0.4  # multiplies a probing site's score


@dataclass(slots=True)
class _SiteRecord:
    outcomes: deque = field(default_factory=deque)  # (time, ok)
    failures: int = 0
    avoided_until: float = -1.0
    backoff_s: float = 0.0
    probing: bool = False
    downtimes: list[tuple[float, float]] = field(default_factory=list)
    last_reason: str = ""
    offline_reason: str | None = None  # set by an operator: no new work until set online


class SiteHealth:
    """Health of every site, indexed like ``Fabric.sites``."""

    def __init__(self, n_sites: int, policy: HealthPolicy | None = None) -> None:
        self.policy = policy or HealthPolicy()
        self._sites = [_SiteRecord() for _ in range(n_sites)]
        #: fast path for brokerage: time until which a site is unusable (avoided or down)
        self.blocked_until = [-1.0] * n_sites
        self.probing = [False] * n_sites

    def add_downtime(self, site: int, start: float, end: float) -> None:
        self._sites[site].downtimes.append((start, end))

    def set_offline(self, site: int, reason: str) -> None:
        """An operator took the site offline: unusable until ``set_online``."""
        self._sites[site].offline_reason = reason
        self.blocked_until[site] = FOREVER

    def set_online(self, site: int) -> None:
        rec = self._sites[site]
        if rec.offline_reason is not None:
            rec.offline_reason = None
            self.blocked_until[site] = rec.avoided_until

    def is_offline(self, site: int) -> bool:
        return self._sites[site].offline_reason is not None

    def in_downtime(self, site: int, now: float) -> bool:
        return any(s <= now < e for s, e in self._sites[site].downtimes)

    def record(self, site: int, ok: bool, now: float) -> None:
        rec, p = self._sites[site], self.policy
        rec.outcomes.append((now, ok))
        rec.failures += not ok
        while rec.outcomes and rec.outcomes[0][0] < now - p.window_s:
            _, old_ok = rec.outcomes.popleft()
            rec.failures -= not old_ok
        if rec.probing:
            if ok:
                self._recover(site)
            else:
                self._avoid(site, now, min(rec.backoff_s * 2, p.max_backoff_s),
                            "failed again while probing")
            return
        if (rec.failures >= p.min_failures
                and rec.failures >= p.failure_ratio * len(rec.outcomes)
                and now >= rec.avoided_until):
            self._avoid(site, now, rec.backoff_s or p.backoff_s,
                        f"{rec.failures}/{len(rec.outcomes)} jobs failed in {p.window_s:.0f} s")

    def _avoid(self, site: int, now: float, backoff: float, reason: str) -> None:
        rec = self._sites[site]
        rec.avoided_until, rec.backoff_s, rec.probing = now + backoff, backoff, False
        rec.outcomes.clear()
        rec.failures = 0
        rec.last_reason = reason
        self.blocked_until[site] = FOREVER if rec.offline_reason is not None else (
            rec.avoided_until)
        self.probing[site] = False

    def _recover(self, site: int) -> None:
        rec = self._sites[site]
        rec.probing, rec.backoff_s, rec.last_reason = False, 0.0, ""
        self.probing[site] = False

    def refresh(self, now: float) -> None:
        """Move sites whose avoidance ended to probing; apply downtimes (call every few s)."""
        for i, rec in enumerate(self._sites):
            if rec.offline_reason is not None:
                self.blocked_until[i] = FOREVER
                continue
            down_until = max((e for s, e in rec.downtimes if s <= now < e), default=-1.0)
            if down_until > 0:
                self.blocked_until[i] = max(down_until, rec.avoided_until)
                continue
            if rec.avoided_until > 0 and now >= rec.avoided_until and not rec.probing:
                rec.probing, rec.avoided_until = True, -1.0
                self.probing[i] = True
            self.blocked_until[i] = rec.avoided_until

    def status(self, site: int, now: float) -> str:
        if self._sites[site].offline_reason is not None:
            return OFFLINE
        if self.in_downtime(site, now):
            return DOWNTIME
        rec = self._sites[site]
        if now < rec.avoided_until:
            return AVOIDED
        return PROBING if rec.probing or rec.avoided_until > 0 else OK

    def reason(self, site: int) -> str:
        rec = self._sites[site]
        return rec.offline_reason if rec.offline_reason is not None else rec.last_reason
