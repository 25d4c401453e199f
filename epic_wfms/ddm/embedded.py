"""Embedded DDM: catalog in the bookkeeping store, replicas as files on local-disk RSEs.

Rules are executed at once by the caller's thread (the embedded "conveyor"): each missing
replica is copied from an available source replica and its adler32 verified; a mismatch
marks the replica bad (B) and the rule STUCK, with the reason.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from epic_wfms.ddm.interface import DID, FileSpec, FileView, Replica, RuleInfo
from epic_wfms.ddm.rse import LocalRSE, lookup_rse, match_expression
from epic_wfms.errors import DataManagementError
from epic_wfms.model.checksum import file_adler32
from epic_wfms.store.database import Database, insert_ignoring_duplicates, upsert
from epic_wfms.store.schema import (
    AttachmentRecord,
    DidRecord,
    ReplicaRecord,
    RseRecord,
    RuleRecord,
    utcnow,
)


@dataclass(frozen=True)
class _Copy:
    """Outcome of copying one replica: state A (verified) or B (bad), with the reason."""

    rse: str
    path: str
    state: str
    error: str | None = None


class EmbeddedDDM:
    def __init__(self, db: Database, rses: list[LocalRSE]) -> None:
        self.db = db
        self.rses = {rse.name: rse for rse in rses}
        for rse in rses:
            rse.root.mkdir(parents=True, exist_ok=True)
            self._declare(rse)

    def _declare(self, rse: LocalRSE) -> None:
        """Upsert the RSE row; agents starting together may race, the loser retries."""
        for attempt in range(2):
            try:
                with self.db.session() as session:
                    session.merge(RseRecord(
                        name=rse.name, site=rse.site, rse_type=rse.rse_type, root=str(rse.root)
                    ))
                return
            except IntegrityError:
                if attempt:
                    raise

    def rse(self, name: str) -> LocalRSE:
        return lookup_rse(self.rses, name)

    def add_dataset(self, did: DID, meta: dict[str, Any] | None = None) -> None:
        try:
            with self.db.session() as session:
                if session.get(DidRecord, (did.scope, did.name)) is None:
                    session.add(DidRecord(
                        scope=did.scope, name=did.name, did_type="DATASET", meta=meta or {}
                    ))
        except IntegrityError:
            pass  # created concurrently: the call is idempotent

    def register_file(self, spec: FileSpec) -> None:
        self.register_and_attach([spec], {})

    def attach(self, dataset: DID, files: list[DID]) -> None:
        with self.db.session() as session:
            self._attach(session, {dataset: files})

    def register_and_attach(self, files: list[FileSpec], attachments: dict[DID, list[DID]]) -> None:
        """One transaction, a handful of statements, whatever the number of files."""
        for spec in files:
            self.rse(spec.rse)
        with self.db.session() as session:
            self._check_unchanged(session, files)
            session.execute(insert_ignoring_duplicates(session, DidRecord), [{
                "scope": f.did.scope, "name": f.did.name, "did_type": "FILE", "bytes": f.bytes,
                "adler32": f.adler32, "meta": f.meta, "is_open": False,
            } for f in files])
            session.execute(insert_ignoring_duplicates(session, ReplicaRecord), [{
                "scope": f.did.scope, "name": f.did.name, "rse": f.rse, "path": f.path,
                "state": "A",
            } for f in files])
            if attachments:
                self._attach(session, attachments)

    def _check_unchanged(self, session: Session, files: list[FileSpec]) -> None:
        """A DID is immutable: re-registering it with other content is refused."""
        names = [f.did.name for f in files]
        known = {(r.scope, r.name): r for r in session.scalars(
            select(DidRecord).where(DidRecord.name.in_(names)))}
        for spec in files:
            existing = known.get((spec.did.scope, spec.did.name))
            if existing is not None and (existing.adler32, existing.bytes) != (
                    spec.adler32, spec.bytes):
                raise DataManagementError(
                    f"{spec.did} is already registered with different content",
                    f"catalog has {existing.bytes} B ad:{existing.adler32}, "
                    f"new has {spec.bytes} B ad:{spec.adler32}",
                    "a DID is immutable in Rucio: register the new file under a new name",
                )

    def _attach(self, session: Session, attachments: dict[DID, list[DID]]) -> None:
        datasets = {(r.scope, r.name): r for r in session.scalars(select(DidRecord).where(
            DidRecord.name.in_([d.name for d in attachments])))}
        rows = []
        for dataset, files in attachments.items():
            record = datasets.get((dataset.scope, dataset.name))
            if record is None or record.did_type != "DATASET":
                raise DataManagementError(
                    f"dataset {dataset} does not exist", "files attach only to datasets",
                    "create it with add_dataset first",
                )
            if not record.is_open:
                raise DataManagementError(
                    f"dataset {dataset} is closed", "a closed dataset cannot grow",
                    "attach to the run's open dataset before end_run closes it",
                )
            rows += [{"dataset_scope": dataset.scope, "dataset_name": dataset.name,
                      "scope": did.scope, "name": did.name} for did in files]
        if rows:
            session.execute(insert_ignoring_duplicates(session, AttachmentRecord), rows)

    def close_dataset(self, dataset: DID) -> None:
        with self.db.session() as session:
            record = session.get(DidRecord, (dataset.scope, dataset.name))
            if record is not None and record.is_open:
                record.is_open, record.closed_at = False, utcnow()

    def reopen_dataset(self, dataset: DID) -> None:
        with self.db.session() as session:
            record = session.get(DidRecord, (dataset.scope, dataset.name))
            if record is not None and not record.is_open:
                record.is_open, record.closed_at = True, None

    def is_open(self, dataset: DID) -> bool:
        with self.db.session() as session:
            record = session.get(DidRecord, (dataset.scope, dataset.name))
            return bool(record is not None and record.is_open)

    def list_files(self, dataset: DID) -> list[DID]:
        with self.db.session() as session:
            rows = session.scalars(select(AttachmentRecord).where(
                AttachmentRecord.dataset_scope == dataset.scope,
                AttachmentRecord.dataset_name == dataset.name,
            ).order_by(AttachmentRecord.name))
            return [DID(r.scope, r.name) for r in rows]

    def dataset_view(self, dataset: DID) -> dict[str, FileView]:
        """The dataset's files with checksum and replica states, in one read."""
        with self.db.session() as session:
            rows = session.execute(select(
                AttachmentRecord.name, DidRecord.adler32, ReplicaRecord.rse, ReplicaRecord.state,
            ).select_from(AttachmentRecord).join(DidRecord, (
                DidRecord.scope == AttachmentRecord.scope) & (
                DidRecord.name == AttachmentRecord.name)).outerjoin(ReplicaRecord, (
                    ReplicaRecord.scope == AttachmentRecord.scope) & (
                    ReplicaRecord.name == AttachmentRecord.name)).where(
                AttachmentRecord.dataset_scope == dataset.scope,
                AttachmentRecord.dataset_name == dataset.name)).all()
        view: dict[str, FileView] = {}
        for name, adler32, rse, state in rows:
            entry = view.setdefault(name, FileView(adler32, {}))
            if rse is not None:
                entry.states[rse] = state
        return view

    def list_replicas(self, did: DID) -> list[Replica]:
        with self.db.session() as session:
            rows = session.scalars(select(ReplicaRecord).where(
                ReplicaRecord.scope == did.scope, ReplicaRecord.name == did.name
            ).order_by(ReplicaRecord.rse))
            return [Replica(did, r.rse, r.path, r.state) for r in rows]

    def pfn(self, did: DID, rse: str) -> str:
        return str(self.rse(rse).path_for(did.scope, did.name))

    def local_path(self, did: DID, rse: str) -> str:
        return self.local_paths([did], rse)[did]

    def local_paths(self, dids: list[DID], rse: str) -> dict[DID, str]:
        with self.db.session() as session:
            found = {(r.scope, r.name): r.path for r in session.scalars(select(ReplicaRecord).where(
                ReplicaRecord.name.in_([d.name for d in dids]), ReplicaRecord.rse == rse,
                ReplicaRecord.state == "A",
            ))}
        missing = [did for did in dids if (did.scope, did.name) not in found]
        if missing:
            raise DataManagementError(
                f"no available replica of {missing[0]} on {rse}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                "the file was not transferred there", f"add a rule for {missing[0]} to {rse} first",
            )
        return {did: found[did.scope, did.name] for did in dids}

    def add_rule(
        self, did: DID, rse_expression: str, copies: int = 1, activity: str = "default"
    ) -> RuleInfo:
        return self.add_rules([did], rse_expression, copies, activity)[0]

    def add_rules(
        self, dids: list[DID], rse_expression: str, copies: int = 1, activity: str = "default"
    ) -> list[RuleInfo]:
        """One rule per DID; the catalog is read and written once for the whole list."""
        targets = self._targets(dids, rse_expression, copies)
        with self.db.session() as session:
            found = {(r.scope, r.name): r for r in session.scalars(select(DidRecord).where(
                DidRecord.name.in_([d.name for d in dids])))}
            replicas: dict[tuple[str, str], list[ReplicaRecord]] = {}
            for replica in session.scalars(select(ReplicaRecord).where(
                    ReplicaRecord.name.in_([d.name for d in dids]))):
                replicas.setdefault((replica.scope, replica.name), []).append(replica)
        for did in dids:
            if (did.scope, did.name) not in found:
                raise DataManagementError(
                    f"cannot create rule for {did}", "the DID is not registered",
                    "register the file first",
                )
        made = {did: [c for t in targets[:copies] if (c := self._copy(
            did, t, replicas.get((did.scope, did.name), []), found[did.scope, did.name].adler32))]
            for did in dids}
        with self.db.session() as session:
            rules = []
            upsert(session, ReplicaRecord, [{
                "scope": did.scope, "name": did.name, "rse": copy.rse, "path": copy.path,
                "state": copy.state, "verified_at": utcnow(),
            } for did in dids for copy in made[did]], keys=["scope", "name", "rse"])
            for did in dids:
                error = next((c.error for c in made[did] if c.error), None)
                rules.append(RuleRecord(
                    scope=did.scope, name=did.name, rse_expression=rse_expression, copies=copies,
                    activity=activity, state="STUCK" if error else "OK", error=error,
                ))
            session.add_all(rules)
            session.flush()
            return [RuleInfo(r.id, DID(r.scope, r.name), rse_expression, copies, r.state, r.error)
                    for r in rules]

    def rule(self, rule_id: int | str) -> RuleInfo:
        with self.db.session() as session:
            r = session.get(RuleRecord, int(rule_id))
            if r is None:
                raise DataManagementError(f"no rule {rule_id}", "it was never created here",
                                          "use the id add_rule returned")
            return RuleInfo(r.id, DID(r.scope, r.name), r.rse_expression, r.copies, r.state,
                            r.error)

    def when_rule_done(self, rule_id: int | str, callback: Callable[[RuleInfo], None]) -> None:
        callback(self.rule(rule_id))  # embedded rules are done when add_rule returns

    def wait_rule(self, rule_id: int | str, timeout: float | None = None) -> RuleInfo:
        return self.rule(rule_id)

    def close(self) -> None:
        """Nothing runs in the background of the embedded DDM."""

    def _targets(self, dids: list[DID], rse_expression: str, copies: int) -> list[LocalRSE]:
        try:
            targets = match_expression(rse_expression, list(self.rses.values()))
        except ValueError as error:
            raise DataManagementError(
                f"cannot create rule for {', '.join(map(str, dids[:3]))}", str(error),
                "fix the RSE expression",
            ) from error
        if copies > len(targets):
            raise DataManagementError(
                f"rule for {dids[0]} asks {copies} copies on {rse_expression!r}",
                f"only {len(targets)} RSEs match", "lower copies or widen the expression",
            )
        return targets

    def _copy(
        self, did: DID, target: LocalRSE, replicas: list[ReplicaRecord], expected: str | None
    ) -> _Copy | None:
        """Copy one replica to ``target`` and verify its adler32; None if already there."""
        if any(r.rse == target.name and r.state == "A" for r in replicas):
            return None
        destination = target.path_for(did.scope, did.name)
        sources = [r for r in replicas if r.state == "A"]
        if not sources:
            return _Copy(target.name, str(destination), "B", f"no available source of {did}")
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(sources[0].path, destination)
            found = file_adler32(destination)
        except OSError as error:
            return _Copy(
                target.name, str(destination), "B", f"transfer to {target.name} failed: {error}"
            )
        if found != expected:
            return _Copy(
                target.name, str(destination), "B",
                f"checksum mismatch on {target.name}: expected ad:{expected}, found ad:{found}",
            )
        return _Copy(target.name, str(destination), "A")
