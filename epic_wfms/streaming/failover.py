"""Fail-over of what is already routed: the ingest role's periodic duty (R5.1, R12.4).

On every tick the decision box looks at the E1s (operator offline, health). The backlog of an
E1 that is unusable (its STFs queued or deferred there, no job yet) moves to the usable ones by
policy: each STF's site changes by compare-and-set (the old site's agent may claim it first,
then it runs there), it joins the new site's dataset, and a queued one gets a process request
at its new site (the old request is stale: the processing agent claims only at an STF's
current site). When E1s become usable again, STFs held for want of one are dispatched.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.ddm import DID
from epic_wfms.errors import EpicWfmsError
from epic_wfms.lifecycle.run import RUN_LIVE
from epic_wfms.lifecycle.stf import ProcessingStatus as P
from epic_wfms.model import naming
from epic_wfms.store.controls import processing_held
from epic_wfms.store.schema import RunRecord, StfRecord
from epic_wfms.streaming.context import StreamingContext
from epic_wfms.streaming.decision_box import DecisionBox
from epic_wfms.streaming.gating import gate_action

log = logging.getLogger(__name__)


class SiteFailover:
    def __init__(self, ctx: StreamingContext, box: DecisionBox) -> None:
        self.ctx = ctx
        self.box = box

    def tick(self) -> int:
        """Reroute the unusable E1s' backlogs; the number of STFs moved or dispatched."""
        result = self.box.reroute(self.ctx.db)
        out: list[tuple[str, m.Message]] = []
        for stf, site, _reasons in result.moved:
            self._attach(stf, site)
            if stf.processing_status == P.QUEUED:
                out.append(self._request(stf, site))
        held = self._held_for_a_site() if result.usable_again else []
        out += [self._request(stf, stf.site) for stf in held]
        self.ctx.bus.publish_many(out)
        return len(result.moved) + len(held)

    def _attach(self, stf: StfRecord, site: str) -> None:
        """The STF joins its new site's dataset (what a prompt task there reads)."""
        dataset = DID(naming.SCOPE, naming.site_dataset(stf.run_number, site))
        try:
            self.ctx.ddm.attach(dataset, [DID(naming.SCOPE, stf.filename)])
        except EpicWfmsError as error:  # e.g. the dataset closed at end_run: processing
            log.warning("%s rerouted to %s, not attached to %s: %s",  # does not need it
                        stf.filename, site, dataset, error)

    def _request(self, stf: StfRecord, site: str) -> tuple[str, m.Message]:
        work = m.StfWork(filename=stf.filename, run_number=stf.run_number,
                         sequence=stf.sequence, site=site)
        return dest.process_queue(site), self.ctx.message("process_stf", work, stf.run_number)

    def _held_for_a_site(self) -> list[StfRecord]:
        """Deferred STFs of live runs whose gate says process, while no operator holds
        processing: deferred because no E1 was usable when they were routed."""
        gate = self.ctx.config.processing.gate
        with self.ctx.db.session() as session:
            if processing_held(session):
                return []
            rows = session.scalars(select(StfRecord).join(
                RunRecord, RunRecord.number == StfRecord.run_number).where(
                RunRecord.status.in_(RUN_LIVE), StfRecord.processing_status == P.DEFERRED,
                StfRecord.site.is_not(None)).order_by(StfRecord.id)).all()
            for row in rows:
                session.expunge(row)
        return [r for r in rows if gate_action(gate, r.state, r.substate) == "process"]
