"""Butterfly balance of streaming between the two E1s, with fail-over (R5.1, R12.4).

STFs leave the DAQ at the source E1 (BNL hosts E0). Each STF is processed at one E1, chosen
by running deficit against the target fractions (50/50 by default). Fractions adapt:
  * an E1 taken offline by an operator, in downtime, avoided for failures, or with its
    streaming queue full gets none; its share goes to the other E1s;
  * when every E1 with a target share is unusable, the E1s without one (e.g. the standby of
    a single-site setup) take the stream, equally;
  * a degraded BNL-JLab link caps the remote E1's fraction at what the link can carry
    (stream rate x STF size must fit in ``link_headroom`` of the link);
  * with no E1 usable the STF is *deferred*: it stays in the DAQ buffer (~72 h) and is
    routed again later, so nothing is lost.
A route may be restricted to some E1s (``among``: a metadata rule's sites; if none of them is
usable, any usable E1 takes it) or decided by load (``load``: the least loaded usable E1).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from epic_wfms.brokerage.decision import ASSIGNED, DEFERRED, Decision
from epic_wfms.brokerage.state import FabricState
from epic_wfms.errors import ConfigurationError


class ButterflyBalancer:
    MEMORY = 0.99  # decay of the per-E1 counts at each STF

    def __init__(self, state: FabricState, source_site: str = "E1_BNL",
                 fractions: dict[str, float] | None = None, stream_rate_hz: float = 1.67,
                 stf_size_gb: float = 2.0, link_headroom: float = 0.5,
                 sites: Collection[str] | None = None) -> None:
        fab = state.fabric
        self.state = state
        self.source = fab.site_index.get(source_site, -1)
        self.queue_of: dict[int, int] = {}
        for name in sites if sites is not None else (fab.sites[s] for s in fab.e1_sites()):
            s = fab.site_index.get(name)
            streaming = [q.index for q in fab.queues if q.site_index == s
                         and "streaming" in q.classes]
            if s is None or fab.echelons[s] != "E1" or not streaming:
                raise ConfigurationError(
                    f"{name} cannot take streaming", "the site catalogue has no E1 of that "
                    "name with a queue whose workflow_classes include streaming",
                    "name E1 sites of the catalogue (`epic-wfms sites list`) or add the "
                    "site's streaming queue to its site file")
            self.queue_of[s] = streaming[0]
        names = fractions or dict.fromkeys((fab.sites[s] for s in self.queue_of), 1.0)
        unknown = [n for n in names if fab.site_index.get(n) not in self.queue_of]
        total = sum(names.values())
        if unknown or total <= 0:
            streaming = sorted(fab.sites[s] for s in self.queue_of)
            raise ConfigurationError(
                f"butterfly fractions {names} cannot be used",
                f"{unknown} take no streaming here" if unknown else "they sum to 0",
                f"give positive fractions to sites of {streaming}")
        self.targets = {fab.site_index[n]: f / total for n, f in names.items() if f > 0}
        #: E1s without a target share: they take the stream only when no targeted E1 can
        self.spares = {s: 1.0 / len(self.queue_of) for s in self.queue_of
                       if s not in self.targets}
        self.stream_gbps = stream_rate_hz * stf_size_gb * 8.0
        self.link_headroom = link_headroom
        self.assigned = dict.fromkeys(self.queue_of, 0.0)
        self._usable: frozenset[int] = frozenset(self.queue_of)

    def site_names(self) -> list[str]:
        return [self.state.fabric.sites[s] for s in self.queue_of]

    def _shares(self, targets: Mapping[int, float], now: float, degraded: dict[str, str]
                ) -> dict[int, float]:
        st, fab = self.state, self.state.fabric
        eff = {}
        for s, target in targets.items():
            q = self.queue_of[s]
            if st.health.blocked_until[s] > now:
                status, why = st.health.status(s, now), st.health.reason(s)
                degraded[fab.sites[s]] = f"{status}: {why}" if why else status
                continue
            if st.queued[q] >= fab.queues[q].max_queued:
                degraded[fab.sites[s]] = "streaming queue full"
                continue
            frac = target
            if s != self.source and self.source >= 0:
                carry = st.direct_gbps(self.source, s) * self.link_headroom / self.stream_gbps
                if carry < frac:
                    degraded[fab.sites[s]] = (
                        f"link from {fab.sites[self.source]} carries {carry:.0%} of the stream")
                    frac = max(carry, 0.0)
            if frac > 0:
                eff[s] = frac
        if eff and self.source in eff:  # what the remote E1 cannot take stays at the source
            eff[self.source] += max(sum(targets.values()) - sum(eff.values()), 0.0)
        return eff

    def effective_fractions(self, now: float, among: Collection[str] | None = None
                            ) -> tuple[dict[int, float], dict[str, str]]:
        """Target fractions after removing unusable E1s and capping by the link (restricted
        to ``among`` when some of those are usable)."""
        degraded: dict[str, str] = {}
        eff = self._shares(self.targets, now, degraded)
        if not eff and self.spares:
            eff = self._shares(self.spares, now, degraded)
        if among is not None:
            names = self.state.fabric.sites
            eff = {s: f for s, f in eff.items() if names[s] in among} or eff
        total = sum(eff.values())
        return {s: f / total for s, f in eff.items()} if total else {}, degraded

    def route(self, stf_id: str, now: float = 0.0, among: Collection[str] | None = None,
              load: Mapping[str, int] | None = None) -> Decision:
        fab = self.state.fabric
        eff, degraded = self.effective_fractions(now, among)
        if not eff:
            return Decision(stf_id, DEFERRED, None, None, -1, 0.0, now, {
                "policy": "butterfly", "degraded": degraded,
                "summary": "no E1 can take streaming now; the STF waits in the DAQ buffer",
            })
        if frozenset(eff) != self._usable:  # an E1 left or came back: balance from now on,
            self._usable = frozenset(eff)  # not by catching up on the past
            self.assigned = dict.fromkeys(self.assigned, 0.0)
        for s in self.assigned:  # recent STFs count most (about the last hundred)
            self.assigned[s] *= self.MEMORY
        n = sum(self.assigned.values()) + 1

        def deficit(s: int) -> tuple[float, int]:
            return eff[s] * n - self.assigned[s], -s

        if load is not None:  # the least loaded usable E1; the deficit breaks ties
            chosen = min(eff, key=lambda s: (load.get(fab.sites[s], 0), *(-x for x in deficit(s))))
        else:
            chosen = max(eff, key=deficit)
        self.assigned[chosen] += 1
        q = self.queue_of[chosen]
        how = (f"least loaded ({load.get(fab.sites[chosen], 0)} waiting)" if load is not None
               else f"butterfly share {eff[chosen]:.0%}")
        return Decision(stf_id, ASSIGNED, fab.sites[chosen], fab.queues[q].name, q,
                        eff[chosen], now, {
                            "policy": "butterfly",
                            "targets": {fab.sites[s]: round(f, 4) for s, f in self.targets.items()},
                            "effective": {fab.sites[s]: round(f, 4) for s, f in eff.items()},
                            "degraded": degraded,
                            "summary": (f"{how} to {fab.sites[chosen]}"
                                        + (f"; fail-over: {degraded}" if degraded else "")),
                        })
