"""Archiving: a replication rule puts every valid STF on tape at both E1s, checksum-verified."""

from __future__ import annotations

from sqlalchemy import select

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.ddm import DID, RuleInfo
from epic_wfms.ddm.locality import when_done
from epic_wfms.model import naming
from epic_wfms.store.integrity import report_issue
from epic_wfms.store.schema import StfRecord, utcnow
from epic_wfms.store.stfs import stf_by_filename
from epic_wfms.streaming.context import StreamingContext


class Archiver:
    ACTIVITY = "Raw Archival"

    def __init__(self, ctx: StreamingContext, consumers: int = 2) -> None:
        self.ctx = ctx
        self.consumers = consumers
        self.rse_expression = "|".join(site.tape_rse for site in ctx.config.sites)

    def subscribe(self) -> None:
        for index in range(self.consumers):
            self.ctx.bus.subscribe(dest.ARCHIVE, f"archiver-{index}", self.on_archive_stf)

    def on_archive_stf(self, message: m.Message) -> None:
        work: m.StfWork = message.body
        if self._status(work.filename) == "archived":
            return  # idempotent: a redelivered request changes nothing
        did = DID(naming.SCOPE, work.filename)
        rule = self.ctx.ddm.add_rule(
            did, self.rse_expression, copies=len(self.ctx.config.sites), activity=self.ACTIVITY
        )
        when_done(self.ctx.ddm, rule, lambda info: self._archived(work, info))

    def _archived(self, work: m.StfWork, rule: RuleInfo) -> None:
        """The archive rule finished (at once, or later on the DDM's rule event)."""
        archived = rule.state == "OK"
        with self.ctx.db.session() as session:
            record = stf_by_filename(session, work.filename)
            record.archive_status = "archived" if archived else "failed"
            record.archived_at = utcnow() if archived else None
        if not archived:
            report_issue(
                self.ctx.db, "archive_failed", f"rule {rule.id} STUCK: {rule.error}",
                run_number=work.run_number, filename=work.filename,
            )
            return
        self.ctx.publish(dest.EVENTS, "stf_archived", m.StfNews(
            filename=work.filename, run_number=work.run_number, sequence=work.sequence,
            detail={"rule_id": rule.id, "rse_expression": self.rse_expression},
        ), work.run_number)

    def _status(self, filename: str) -> str | None:
        with self.ctx.db.session() as session:
            return session.scalar(
                select(StfRecord.archive_status).where(StfRecord.filename == filename)
            )
