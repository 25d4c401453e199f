"""Fair share over time (R8.5): usage per site and workflow class, decaying with a half-life.

Brokerage uses the instantaneous committed cores (running + queued) against each site's share
targets; dispatch at a queue picks the class furthest below its target in the decayed usage,
so that over hours each class gets its share of a site whatever the arrival pattern.
"""

from __future__ import annotations

import math

from epic_wfms.sites.models import CRITICALITY

CLASSES = tuple(CRITICALITY)


class FairShare:
    def __init__(self, site_shares: list[dict[str, float]], half_life_s: float = 6 * 3600.0):
        self.targets = [dict(s) for s in site_shares]
        self._lambda = math.log(2) / half_life_s
        n = len(site_shares)
        self.usage = [dict.fromkeys(CLASSES, 0.0) for _ in range(n)]
        self._stamp = [0.0] * n
        #: cores committed (running + queued) and running, per site and class (FabricState)
        self.committed = [dict.fromkeys(CLASSES, 0) for _ in range(n)]
        self.running = [dict.fromkeys(CLASSES, 0) for _ in range(n)]

    def charge(self, site: int, workflow_class: str, core_seconds: float, now: float) -> None:
        self._decay(site, now)
        self.usage[site][workflow_class] += core_seconds

    def _decay(self, site: int, now: float) -> None:
        dt = now - self._stamp[site]
        if dt > 0:
            factor = math.exp(-self._lambda * dt)
            usage = self.usage[site]
            for c in usage:
                usage[c] *= factor
            self._stamp[site] = now

    def fractions(self, site: int) -> dict[str, float]:
        usage = self.usage[site]
        total = sum(usage.values()) or 1.0
        return {c: u / total for c, u in usage.items()}

    def pick(self, site: int, waiting: list[str], now: float) -> str:
        """Of the classes with work waiting at the site, the one furthest below its target.

        Half the weight on the cores each class holds now (fast response), half on the
        decayed past usage (a class that was short in the past catches up).
        """
        self._decay(site, now)
        usage, running, targets = self.usage[site], self.running[site], self.targets[site]
        used = sum(usage.values()) or 1.0
        held = sum(running.values()) or 1.0
        return max(waiting, key=lambda c: targets.get(c, 0.0)
                   - 0.5 * (usage[c] / used + running[c] / held))
