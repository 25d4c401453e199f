"""Archiving: a replication rule puts every valid STF on tape at both E1s, checksum-verified."""

from __future__ import annotations

from sqlalchemy import select, update

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.ddm import DID, RuleInfo
from epic_wfms.ddm.locality import when_done
from epic_wfms.lifecycle.stf import ARCHIVE, ArchiveStatus
from epic_wfms.model import naming
from epic_wfms.store.integrity import report_issue
from epic_wfms.store.schema import StfRecord, utcnow
from epic_wfms.streaming.context import StreamingContext

MAX_BATCH = 32  # archive requests turned into rules together when the archiver is behind


class Archiver:
    ACTIVITY = "Raw Archival"

    def __init__(self, ctx: StreamingContext, consumers: int = 2) -> None:
        self.ctx = ctx
        self.consumers = consumers
        self.rse_expression = "|".join(site.tape_rse for site in ctx.config.sites)

    def subscribe(self) -> None:
        for index in range(self.consumers):
            self.ctx.bus.subscribe_batch(dest.ARCHIVE, f"archiver-{index}", self.on_archive_stfs,
                                         max_batch=MAX_BATCH)

    def on_archive_stfs(self, messages: list[m.Message]) -> None:
        """One rule per STF, created for the whole batch at once; archived STFs are skipped
        (a redelivered request changes nothing)."""
        with self.ctx.db.session() as session:
            done = set(session.scalars(select(StfRecord.filename).where(
                StfRecord.filename.in_([msg.body.filename for msg in messages]),
                StfRecord.archive_status == ArchiveStatus.ARCHIVED)))
        work = list({msg.body.filename: msg.body for msg in messages
                     if msg.body.filename not in done}.values())
        if not work:
            return
        rules = self.ctx.ddm.add_rules(
            [DID(naming.SCOPE, w.filename) for w in work], self.rse_expression,
            copies=len(self.ctx.config.sites), activity=self.ACTIVITY,
        )
        done = [(w, r) for w, r in zip(work, rules, strict=True) if r.state != "REPLICATING"]
        self._archived(done)
        for w, rule in zip(work, rules, strict=True):
            if rule.state == "REPLICATING":  # asynchronous transfers (Rucio): on the rule event
                when_done(self.ctx.ddm, rule, lambda info, w=w: self._archived([(w, info)]))

    def _archived(self, finished: list[tuple[m.StfWork, RuleInfo]]) -> None:
        """Archive rules that left REPLICATING: record them and announce the archived ones."""
        if not finished:
            return
        self._record([w for w, _r in finished], [r for _w, r in finished])
        self.ctx.bus.publish_many([(dest.EVENTS, self.ctx.message("stf_archived", m.StfNews(
            filename=w.filename, run_number=w.run_number, sequence=w.sequence,
            detail={"rule_id": rule.id, "rse_expression": self.rse_expression},
        ), w.run_number)) for w, rule in finished if rule.state == "OK"])

    def _record(self, work: list[m.StfWork], rules: list[RuleInfo]) -> None:
        """Compare-and-set per outcome: an STF already archived is not failed by a late rule."""
        now, stfs = utcnow(), StfRecord.__table__
        outcomes = {ArchiveStatus.ARCHIVED: [w.filename for w, r in zip(work, rules, strict=True)
                                             if r.state == "OK"],
                    ArchiveStatus.FAILED: [w.filename for w, r in zip(work, rules, strict=True)
                                           if r.state != "OK"]}
        with self.ctx.db.session() as session:
            for status, names in outcomes.items():
                if names:
                    session.execute(update(stfs).where(
                        stfs.c.filename.in_(names), ARCHIVE.where(stfs.c.archive_status, status),
                    ).values(archive_status=status,
                             archived_at=now if status is ArchiveStatus.ARCHIVED else None))
        for w, rule in zip(work, rules, strict=True):
            if rule.state != "OK":
                report_issue(
                    self.ctx.db, "archive_failed", f"rule {rule.id} STUCK: {rule.error}",
                    run_number=w.run_number, filename=w.filename,
                )
