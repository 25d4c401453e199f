"""The decision box: which E1 site(s) get each STF for prompt processing (butterfly model).

Policies (configuration ``decision_box.policy``):
  alternate    round-robin by sequence number over the E1 sites
  both         every STF to every site (the first one processes, the others keep a copy)
  by_load      the site with the smallest processing backlog right now
  by_fraction  deterministic shares, e.g. {E1_BNL: 0.7, E1_JLAB: 0.3}, by running deficit
  by_metadata  rules on the STF's DAQ metadata; unmatched STFs fall back to alternate
  single       everything to ``single_site`` (the testbed's behaviour)
The first site returned is where the STF is processed; all are attached to site datasets.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from epic_wfms.config import DecisionBoxConfig
from epic_wfms.model.stf import SuperTimeFrame


class DecisionBox:
    def __init__(
        self, config: DecisionBoxConfig, sites: list[str], backlog: Callable[[str], int]
    ) -> None:
        self.config = config
        self.sites = sites
        self._backlog = backlog
        self._assigned = dict.fromkeys(sites, 0)
        self._lock = threading.Lock()

    def route(self, stf: SuperTimeFrame) -> list[str]:
        with self._lock:
            chosen = getattr(self, f"_{self.config.policy}")(stf)
            self._assigned[chosen[0]] += 1
            return chosen

    def _alternate(self, stf: SuperTimeFrame) -> list[str]:
        return [self.sites[stf.sequence % len(self.sites)]]

    def _both(self, stf: SuperTimeFrame) -> list[str]:
        primary = self._alternate(stf)[0]
        return [primary, *(s for s in self.sites if s != primary)]

    def _by_load(self, stf: SuperTimeFrame) -> list[str]:
        return [min(self.sites, key=lambda s: (self._backlog(s), self._assigned[s]))]

    def _by_fraction(self, stf: SuperTimeFrame) -> list[str]:
        shares = self.config.fractions or dict.fromkeys(self.sites, 1.0)
        total_share = sum(shares.values())
        total_assigned = sum(self._assigned.values()) + 1

        def deficit(site: str) -> float:
            return shares.get(site, 0.0) / total_share * total_assigned - self._assigned[site]

        return [max((s for s in self.sites if shares.get(s, 0.0) > 0), key=deficit)]

    def _by_metadata(self, stf: SuperTimeFrame) -> list[str]:
        for rule in self.config.metadata_rules:
            if stf.daq_metadata.get(rule.field) == rule.equals:
                return list(rule.sites)
        return self._alternate(stf)

    def _single(self, stf: SuperTimeFrame) -> list[str]:
        return [self.config.single_site or self.sites[0]]
