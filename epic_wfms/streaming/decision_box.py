"""The decision box: which E1 site(s) get each STF for prompt processing (butterfly model).

Every STF of a run is routed by the butterfly balancer (``brokerage/butterfly.py``) over the
site catalogue's E1s, as the store says they are now (``streaming/site_view.py``): an E1 an
operator took offline, or one avoided for its recent job failures, gets no new STFs; its
share goes to the other E1s and comes back when it returns. The configured policy
(``decision_box.policy``) says what the balancer aims at:

  alternate    equal target shares over the configured E1 sites (STF by STF in turn)
  by_fraction  target shares ``fractions``, e.g. {E1_BNL: 0.7, E1_JLAB: 0.3}
  single       everything to ``single_site``; the other E1s take over only while it is
               unusable (fail-over)
  by_load      the usable E1 with the smallest processing backlog now
  both         processed at one E1 (equal shares), a copy in every other usable E1's dataset
  by_metadata  ``metadata_rules`` on the STF's DAQ metadata: a matching STF is processed at
               one of the rule's sites (balanced among them; another E1 if none is usable),
               the rule's other usable sites keep a copy; unmatched STFs as alternate
With no E1 usable at all, an STF is *deferred* at its target site and dispatched when an E1
is usable again. The first site of a route processes the STF; all are attached to their site
datasets. Every decision, and every reroute of a backlog, is a row of ``brokerage_decisions``
(``job_ref`` the STF file name) with its reasons.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from epic_wfms.brokerage.butterfly import ButterflyBalancer
from epic_wfms.brokerage.decision import ASSIGNED, Decision
from epic_wfms.brokerage.health import HealthPolicy
from epic_wfms.config import Config, DecisionBoxConfig
from epic_wfms.lifecycle.run import RUN_ENDED
from epic_wfms.lifecycle.stf import STF_LOAD
from epic_wfms.lifecycle.stf import ProcessingStatus as P
from epic_wfms.model.stf import SuperTimeFrame
from epic_wfms.sites.catalogue import Catalogue, load_catalogue
from epic_wfms.store.database import Database
from epic_wfms.store.schema import BrokerageDecisionRecord, RunRecord, StfRecord, utcnow
from epic_wfms.streaming.site_view import SiteView

log = logging.getLogger(__name__)

WORKFLOW = "streaming_reco"  # brokerage_decisions.workflow of the STF routes
USER = "epic-streaming"
BACKLOG = (P.QUEUED, P.DEFERRED)  # routed to a site, no job of it yet: can be rerouted
_DECISIONS = BrokerageDecisionRecord.__table__


@dataclass(frozen=True, slots=True)
class Route:
    """Where an STF goes: ``sites[0]`` processes it (none: archive only), the others keep a
    copy; ``deferred``: no E1 is usable now, processing waits."""

    sites: list[str]
    deferred: bool
    decision: dict[str, Any]  # the brokerage_decisions row


def balancer_for(config: DecisionBoxConfig, sites: list[str], view: SiteView
                 ) -> ButterflyBalancer:
    """The butterfly balancer over ``sites`` aiming at what ``config.policy`` says."""
    fractions = None
    if config.policy == "by_fraction" and config.fractions:
        fractions = dict(config.fractions)
    elif config.policy == "single":
        fractions = {config.single_site or sites[0]: 1.0}
    return ButterflyBalancer(view.state, source_site=sites[0], fractions=fractions, sites=sites)


class DecisionBox:
    def __init__(self, config: DecisionBoxConfig, sites: list[str], view: SiteView,
                 backlog: Callable[[], dict[str, int]] | None = None) -> None:
        self.config = config
        self.sites = sites
        self.view = view
        self.balancer = balancer_for(config, sites, view)
        self._backlog = backlog or (lambda: {})
        self._lock = threading.Lock()
        self._usable: frozenset[str] | None = None

    @classmethod
    def build(cls, config: Config, db: Database, catalogue: Catalogue | None = None
              ) -> DecisionBox:
        """The installation's decision box: its configured E1 sites in the site catalogue
        (``site_catalogue``), health judged by ``decision_box.health``."""
        catalogue = catalogue or load_catalogue(config.site_catalogue)
        view = SiteView(db, catalogue, HealthPolicy(**config.decision_box.health.model_dump()))
        return cls(config.decision_box, [s.name for s in config.sites], view,
                   lambda: site_backlogs(db))

    # -- routing -----------------------------------------------------------------------------
    def route(self, stf: SuperTimeFrame) -> list[str]:
        """Where one STF goes (the first site processes it)."""
        return self.route_batch([stf])[0].sites

    def route_batch(self, stfs: list[SuperTimeFrame]) -> list[Route]:
        """Route a batch of STFs on one look at the sites' state."""
        with self._lock:
            now = self.view.refresh()
            load = self._backlog() if self.config.policy == "by_load" else None
            return [self._route(stf, now, load) for stf in stfs]

    def _route(self, stf: SuperTimeFrame, now: float, load: dict[str, int] | None) -> Route:
        among, copies_of, rule = self._candidates(stf)
        decision = self.balancer.route(stf.filename, now, among=among, load=load)
        if decision.outcome == ASSIGNED:
            primary, deferred = decision.site, False
        else:  # nowhere usable: held at the site it would go to, dispatched when one is back
            primary, deferred = self._fallback_site(among), True
        if load is not None:
            load[primary] = load.get(primary, 0) + 1
        usable = set(decision.reasons.get("effective", {}))
        copies = [s for s in copies_of if s != primary and s in usable]
        reasons = {**decision.reasons, "action": "route", "policy": self.config.policy,
                   "summary": f"{self.config.policy}: {decision.reasons['summary']}"}
        if rule is not None:
            reasons["rule"] = rule
        if copies:
            reasons["copies"] = copies
        if deferred:
            reasons["summary"] += f"; held at {primary} until an E1 is usable"
        return Route([primary, *copies], deferred, self._row(stf.filename, decision, primary,
                                                              reasons))

    def _candidates(self, stf: SuperTimeFrame
                    ) -> tuple[list[str] | None, list[str], dict[str, Any] | None]:
        """(sites to balance among, sites that keep a copy, the metadata rule matched)."""
        if self.config.policy == "both":
            return None, list(self.sites), None
        if self.config.policy == "by_metadata":
            for rule in self.config.metadata_rules:
                if stf.daq_metadata.get(rule.field) == rule.equals:
                    return list(rule.sites), list(rule.sites), rule.model_dump()
        return None, [], None

    def _fallback_site(self, among: list[str] | None) -> str:
        """Where an STF waits when no E1 is usable: the rule's or the largest target's site."""
        if among:
            return among[0]
        targets = self.balancer.targets
        return self.view.fabric.sites[max(targets, key=targets.__getitem__)]

    def _row(self, filename: str, decision: Decision, site: str, reasons: dict[str, Any]
             ) -> dict[str, Any]:
        queue = decision.queue or self._queue(site)
        return {"job_ref": filename, "workflow": WORKFLOW, "username": USER,
                "activity": "streaming", "lane": "normal", "outcome": decision.outcome,
                "site": site, "queue": queue, "score": float(decision.score),
                "reasons": reasons, "decided_at": utcnow()}

    def _queue(self, site: str) -> str | None:
        i = self.view.fabric.site_index.get(site)
        q = self.balancer.queue_of.get(i) if i is not None else None
        return self.view.fabric.queues[q].name if q is not None else None

    # -- fail-over of what is already routed ---------------------------------------------------
    def usable_sites(self, now: float) -> frozenset[str]:
        eff, _ = self.balancer.effective_fractions(now)
        return frozenset(self.view.fabric.sites[s] for s in eff)

    def reroute(self, db: Database, now: float | None = None) -> Reroutes:
        """Move the backlog (queued or deferred STFs, no job yet) of every configured E1 that
        is unusable now to usable ones, by policy; when E1s become usable again, dispatch
        what was held for want of one. The caller announces the moves (``Reroutes``)."""
        with self._lock:
            now = self.view.refresh(now)
            usable = self.usable_sites(now)
            changed, self._usable = usable != self._usable, usable
            moved: list[tuple[StfRecord, str, dict[str, Any]]] = []
            if usable:
                for site in self.sites:
                    if site not in usable:
                        moved += self._move_backlog(db, site, now)
            return Reroutes(moved, changed and bool(usable))

    def _move_backlog(self, db: Database, site: str, now: float
                      ) -> list[tuple[StfRecord, str, dict[str, Any]]]:
        status, why = self.view.status(site, now)
        with db.session() as session:
            live = select(RunRecord.number).where(RunRecord.status.not_in(RUN_ENDED))
            backlog = session.scalars(select(StfRecord).where(
                StfRecord.run_number.in_(live), StfRecord.processing_status.in_(BACKLOG),
                StfRecord.site == site).order_by(StfRecord.id)).all()
            for stf in backlog:
                session.expunge(stf)
        if not backlog:
            return []
        moved, rows = [], []
        load = self._backlog() if self.config.policy == "by_load" else None
        with db.session() as session:
            for stf in backlog:
                decision = self.balancer.route(stf.filename, now, load=load,
                                               among=[s for s in self.sites if s != site])
                if decision.outcome != ASSIGNED:
                    break
                if load is not None:
                    load[decision.site] = load.get(decision.site, 0) + 1
                claimed = session.scalar(update(StfRecord).where(
                    StfRecord.id == stf.id, StfRecord.site == site,
                    StfRecord.processing_status == stf.processing_status,
                ).values(site=decision.site).returning(StfRecord.id))
                if claimed is None:  # its site's agent claimed it meanwhile: it runs there
                    continue
                reasons = {**decision.reasons, "action": "reroute", "from": site,
                           "policy": self.config.policy, "status": stf.processing_status,
                           "summary": f"rerouted from {site} ({status}"
                                      f"{': ' + why if why else ''}): "
                                      f"{decision.reasons['summary']}"}
                rows.append(self._row(stf.filename, decision, decision.site, reasons))
                moved.append((stf, decision.site, reasons))
            if rows:
                session.execute(_DECISIONS.insert(), rows)
        if moved:
            log.warning("rerouted %d STF(s) from %s (%s %s)", len(moved), site, status, why)
        return moved


@dataclass(frozen=True, slots=True)
class Reroutes:
    """STFs moved from an unusable site (record as of before the move, new site, reasons),
    and whether the usable E1s changed (held STFs may go now)."""

    moved: list[tuple[StfRecord, str, dict[str, Any]]]
    usable_again: bool


def site_backlogs(db: Database) -> dict[str, int]:
    """STFs queued or in flight per site (the by_load policy's load), in one query."""
    with db.session() as session:
        return dict(session.execute(select(StfRecord.site, func.count()).where(
            StfRecord.processing_status.in_(STF_LOAD), StfRecord.site.is_not(None))
            .group_by(StfRecord.site)).all())


def record_routes(session: Any, routes: list[Route]) -> None:
    """The routes' decisions into ``brokerage_decisions``, in the caller's transaction."""
    if routes:
        session.execute(_DECISIONS.insert(), [r.decision for r in routes])


def recorded_routes(session: Any, filenames: list[str]) -> dict[str, Route]:
    """The route already decided for each of these STFs, if any: an announcement redelivered
    after its ingest died between routing and recording the STF keeps the sites it was
    attached to (the balancer's running counts start afresh in a new process)."""
    if not filenames:
        return {}
    rows = session.execute(select(_DECISIONS).where(
        _DECISIONS.c.job_ref.in_(filenames), _DECISIONS.c.workflow == WORKFLOW,
    ).order_by(_DECISIONS.c.id)).mappings()
    routes = {}
    for row in rows:
        if row["reasons"].get("action") == "route":  # the first decision, not a reroute
            routes.setdefault(row["job_ref"], Route(
                [row["site"], *row["reasons"].get("copies", [])],
                row["outcome"] != ASSIGNED, dict(row)))
    return routes
