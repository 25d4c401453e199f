"""Butterfly balance of streaming between the two E1s, with fail-over (R5.1, R12.4).

STFs leave the DAQ at the source E1 (BNL hosts E0). Each STF is processed at one E1, chosen
by running deficit against the target fractions (50/50 by default). Fractions adapt:
  * an E1 in downtime, avoided for failures, or with its streaming queue full gets none;
  * a degraded BNL-JLab link caps the remote E1's fraction at what the link can carry
    (stream rate x STF size must fit in ``link_headroom`` of the link);
  * with no E1 usable the STF is *deferred*: it stays in the DAQ buffer (~72 h) and is
    routed again later, so nothing is lost.
"""

from __future__ import annotations

from epic_wfms.brokerage.decision import ASSIGNED, DEFERRED, Decision
from epic_wfms.brokerage.state import FabricState


class ButterflyBalancer:
    MEMORY = 0.99  # decay of the per-E1 counts at each STF

    def __init__(self, state: FabricState, source_site: str = "E1_BNL",
                 fractions: dict[str, float] | None = None, stream_rate_hz: float = 1.67,
                 stf_size_gb: float = 2.0, link_headroom: float = 0.5) -> None:
        fab = state.fabric
        self.state = state
        self.source = fab.site_index[source_site]
        self.e1 = fab.e1_sites()
        self.queue_of = {}
        for s in self.e1:
            streaming = [q.index for q in fab.queues if q.site_index == s
                         and "streaming" in q.classes]
            if streaming:
                self.queue_of[s] = streaming[0]
        names = fractions or dict.fromkeys((fab.sites[s] for s in self.queue_of), 1.0)
        total = sum(names.values())
        self.targets = {fab.site_index[n]: f / total for n, f in names.items()}
        self.stream_gbps = stream_rate_hz * stf_size_gb * 8.0
        self.link_headroom = link_headroom
        self.assigned = dict.fromkeys(self.queue_of, 0.0)
        self._usable: frozenset[int] = frozenset(self.queue_of)

    def effective_fractions(self, now: float) -> tuple[dict[int, float], dict[str, str]]:
        """Target fractions after removing unusable E1s and capping by the link."""
        st, fab = self.state, self.state.fabric
        eff, degraded = {}, {}
        for s, target in self.targets.items():
            q = self.queue_of[s]
            if st.health.blocked_until[s] > now:
                degraded[fab.sites[s]] = st.health.status(s, now)
                continue
            if st.queued[q] >= fab.queues[q].max_queued:
                degraded[fab.sites[s]] = "streaming queue full"
                continue
            frac = target
            if s != self.source:
                carry = st.direct_gbps(self.source, s) * self.link_headroom / self.stream_gbps
                if carry < frac:
                    degraded[fab.sites[s]] = (
                        f"link from {fab.sites[self.source]} carries {carry:.0%} of the stream")
                    frac = max(carry, 0.0)
            if frac > 0:
                eff[s] = frac
        if eff and self.source in eff:  # what the remote E1 cannot take stays at the source
            eff[self.source] += 1.0 - sum(eff.values())
        total = sum(eff.values())
        return {s: f / total for s, f in eff.items()} if total else {}, degraded

    def route(self, stf_id: str, now: float = 0.0) -> Decision:
        fab = self.state.fabric
        eff, degraded = self.effective_fractions(now)
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
        chosen = max(eff, key=lambda s: (eff[s] * n - self.assigned[s], -s))
        self.assigned[chosen] += 1
        q = self.queue_of[chosen]
        return Decision(stf_id, ASSIGNED, fab.sites[chosen], fab.queues[q].name, q,
                        eff[chosen], now, {
                            "policy": "butterfly",
                            "targets": {fab.sites[s]: round(f, 4) for s, f in self.targets.items()},
                            "effective": {fab.sites[s]: round(f, 4) for s, f in eff.items()},
                            "degraded": degraded,
                            "summary": (f"butterfly share {eff[chosen]:.0%} to {fab.sites[chosen]}"
                                        + (f"; fail-over: {degraded}" if degraded else "")),
                        })
