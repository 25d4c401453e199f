"""Rucio as the DDM backend: the ``DataManagement`` interface mapped to ``rucio-clients`` calls.

Every call is idempotent the way the streaming agents need it: a redelivered message
registers nothing twice and raises nothing (Rucio's "already exists" answers are checked
for consistency and absorbed). Bulk variants (``register_files``, ``attach_many``) do a
batch of STFs in a few REST calls. Rules are Rucio's; with ``transfers: local_copy`` the
bytes are moved by ``LocalTransferAgent`` (no FTS here), see docs/rucio.md.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from rucio.common import exception as rucio_errors

from epic_wfms.bus.stomp import StompSettings
from epic_wfms.config import RucioConfig
from epic_wfms.ddm.interface import DID, FileSpec, FileView, Replica, RuleInfo
from epic_wfms.ddm.rse import LocalRSE, lookup_rse
from epic_wfms.ddm.rucio import policy
from epic_wfms.ddm.rucio.client import RucioClients, translate
from epic_wfms.ddm.rucio.events import RucioEventListener
from epic_wfms.ddm.rucio.pfn import file_path, file_pfn
from epic_wfms.ddm.rucio.transfers import FAILURE_PREFIX, LocalTransferAgent
from epic_wfms.ddm.rucio.watch import RuleWatcher
from epic_wfms.errors import DataManagementError
from epic_wfms.model import naming

REPLICA_STATE = {"AVAILABLE": "A", "COPYING": "C", "UNAVAILABLE": "U", "BAD": "B",
                 "BEING_DELETED": "D", "TEMPORARY_UNAVAILABLE": "T"}


class RucioDDM:
    def __init__(self, settings: RucioConfig, rses: list[LocalRSE]) -> None:
        self.settings = settings
        self.rses = {rse.name: rse for rse in rses}
        self.clients = RucioClients(settings)
        self.scope = settings.scope
        self.transfers = LocalTransferAgent(self) if settings.transfers == "local_copy" else None
        self._pfns: dict[tuple[str, str, str], str] = {}
        self._datasets_seen: set[DID] = set()
        # replicas this process registered or transferred and verified: local_path needs no
        # catalog lookup for them (Rucio stays the truth for everything else)
        self._available: dict[DID, dict[str, str]] = defaultdict(dict)
        self._adler32: dict[DID, str] = {}
        self.watcher = RuleWatcher(self)
        self.events: RucioEventListener | None = None

    def listen(self, broker: StompSettings) -> RucioDDM:
        """Follow Rucio's events (rule OK) from its STOMP topic: rules then finish by event."""
        self.events = RucioEventListener(broker, self.settings.events_destination)
        self.events.add_handler(self.watcher.on_event)
        self.events.start()
        return self

    def when_rule_done(self, rule_id: str, callback) -> None:
        self.watcher.when_done(rule_id, callback)

    def close(self) -> None:
        self.watcher.stop()
        if self.events is not None:
            self.events.stop()

    @property
    def client(self):
        return self.clients.get()

    def did(self, did: DID) -> DID:
        """The one naming rule: our default scope maps to the configured ePIC scope."""
        return DID(self.scope, did.name) if did.scope == naming.SCOPE else did

    def rse(self, name: str) -> LocalRSE:
        return lookup_rse(self.rses, name)

    # -- datasets -------------------------------------------------------------------------
    def add_dataset(self, did: DID, meta: dict[str, Any] | None = None) -> None:
        did = self.did(did)
        if did in self._datasets_seen:
            return
        try:
            self.client.add_dataset(did.scope, did.name)
        except rucio_errors.DataIdentifierAlreadyExists:
            pass
        except rucio_errors.RucioException as error:
            raise translate(error, f"cannot create dataset {did}", "check the scope exists and "
                            "the account may write to it") from error
        if meta:
            self._set_meta([(did, meta)])
        if policy.run_of_dataset(did.name) is not None:
            self._into_period(did)
        self._datasets_seen.add(did)

    def _into_period(self, dataset: DID) -> None:
        container = policy.period_container(self.scope, self.settings.period)
        with contextlib.suppress(rucio_errors.DataIdentifierAlreadyExists):
            self.client.add_container(container.scope, container.name)
        self.client.attach_dids_to_dids([{
            "scope": container.scope, "name": container.name,
            "dids": [{"scope": dataset.scope, "name": dataset.name}],
        }], ignore_duplicate=True)

    def close_dataset(self, dataset: DID) -> None:
        dataset = self.did(dataset)
        try:
            self.client.close(dataset.scope, dataset.name)
        except rucio_errors.DataIdentifierNotFound:
            return
        except rucio_errors.UnsupportedStatus:
            pass  # already closed: closing is idempotent
        except rucio_errors.RucioException as error:
            if self.is_open(dataset):
                raise translate(error, f"cannot close {dataset}", "retry; check the server") \
                    from error

    def reopen_dataset(self, dataset: DID) -> None:
        """Rucio lets privileged accounts only reopen a closed dataset (``set_status open``)."""
        dataset = self.did(dataset)
        if self.is_open(dataset):
            return
        try:
            self.client.set_status(dataset.scope, dataset.name, open=True)
        except rucio_errors.RucioException as error:
            raise translate(error, f"cannot reopen {dataset} for a late STF",
                            "Rucio reopens datasets for privileged accounts only: give the "
                            "account of ddm.rucio the admin attribute") from error

    def is_open(self, dataset: DID) -> bool:
        dataset = self.did(dataset)
        return bool(self.client.get_did(dataset.scope, dataset.name).get("open"))

    def list_files(self, dataset: DID) -> list[DID]:
        dataset = self.did(dataset)
        try:
            rows = self.client.list_files(dataset.scope, dataset.name)
            return sorted((DID(r["scope"], r["name"]) for r in rows), key=lambda d: d.name)
        except rucio_errors.DataIdentifierNotFound:
            return []

    # -- files ----------------------------------------------------------------------------
    def register_file(self, spec: FileSpec) -> None:
        self.register_files([spec])

    def register_files(self, specs: list[FileSpec]) -> None:
        """Register replicas and metadata of a batch in three calls; idempotent.

        Rucio's add_replicas skips replicas that exist without comparing content, so the
        batch is looked up first: a DID known with other bytes/adler32 is refused (DIDs are
        immutable); the rest is (re-)added, which registers each replica at most once.
        """
        by_rse: dict[str, list[FileSpec]] = defaultdict(list)
        for spec in specs:
            self.rse(spec.rse)
            by_rse[spec.rse].append(spec)
        known = self._known_files([self.did(s.did) for s in specs])
        for spec in specs:
            row = known.get(self.did(spec.did))
            if row is not None and (int(row["bytes"]) != spec.bytes
                                    or row["adler32"] != spec.adler32):
                raise DataManagementError(
                    f"{self.did(spec.did)} is already registered with different content",
                    f"catalog has {row['bytes']} B ad:{row['adler32']}, "
                    f"new has {spec.bytes} B ad:{spec.adler32}",
                    "a DID is immutable in Rucio: register the new file under a new name",
                )
        for rse, group in by_rse.items():
            try:
                self.client.add_replicas(rse, [self._replica_row(s) for s in group])
            except rucio_errors.RucioException as error:
                raise translate(error, f"cannot register {len(group)} file(s) on {rse}",
                                "check the RSE and the scope exist in Rucio") from error
            for spec in group:
                self._adler32[self.did(spec.did)] = spec.adler32
                self.mark_available(spec.did, rse, str(Path(spec.path).resolve()))
        self._set_meta([(self.did(s.did), policy.file_metadata(s.meta)) for s in specs])

    def _known_files(self, dids: list[DID]) -> dict[DID, dict[str, Any]]:
        rows = self.client.get_metadata_bulk([{"scope": d.scope, "name": d.name} for d in dids])
        return {DID(r["scope"], r["name"]): r for r in rows}

    def _replica_row(self, spec: FileSpec) -> dict[str, Any]:
        did = self.did(spec.did)
        row: dict[str, Any] = {"scope": did.scope, "name": did.name, "bytes": spec.bytes,
                               "adler32": spec.adler32}
        if not self.rses[spec.rse].deterministic:
            row["pfn"] = file_pfn(spec.path)
        return row

    def _set_meta(self, items: list[tuple[DID, dict[str, Any]]]) -> None:
        rows = [{"scope": d.scope, "name": d.name, "meta": m} for d, m in items if m]
        if not rows:
            return
        try:
            self.client.set_dids_metadata_bulk(rows)
        except rucio_errors.RucioException as error:
            raise translate(error, f"cannot set metadata on {len(rows)} DID(s)",
                            "arbitrary keys need the JSON metadata plugin (PostgreSQL)") \
                from error

    def register_and_attach(self, specs: list[FileSpec], attachments: dict[DID, list[DID]]) -> None:
        """Register replicas on their RSE and attach them to their datasets in ONE Rucio call
        (attachments carrying the RSE), plus one for metadata. Rucio checks bytes/adler32
        against an existing DID (FileConsistencyMismatch), skips existing replicas and,
        with ignore_duplicate, existing attachments: a repeat changes nothing."""
        rows = {spec.did: self._replica_row(spec) for spec in specs}
        rses = {spec.rse for spec in specs}
        attached = {did for files in attachments.values() for did in files}
        if len(rses) != 1 or not attachments or not attached <= rows.keys():
            self.register_files(specs)
            self.attach_many(attachments)
            return
        (rse,) = rses
        self.rse(rse)
        calls = [{"scope": d.scope, "name": d.name, "rse": rse,
                  "dids": [rows[f] for f in files]}
                 for d, files in ((self.did(d), files) for d, files in attachments.items())]
        try:
            self.client.attach_dids_to_dids(calls, ignore_duplicate=True)
        except rucio_errors.FileConsistencyMismatch as error:
            raise DataManagementError(
                f"{len(specs)} file(s) already registered with different content",
                f"Rucio: {error}",
                "a DID is immutable in Rucio: register the new file under a new name",
            ) from error
        except (rucio_errors.DataIdentifierNotFound, rucio_errors.UnsupportedOperation):
            self.attach_many(attachments)  # explains which dataset is missing or closed
            raise
        for spec in specs:
            self._adler32[self.did(spec.did)] = spec.adler32
            self.mark_available(spec.did, rse, str(Path(spec.path).resolve()))
        self._set_meta([(self.did(s.did), policy.file_metadata(s.meta)) for s in specs])

    def attach(self, dataset: DID, files: list[DID]) -> None:
        self.attach_many({dataset: files})

    def attach_many(self, attachments: dict[DID, list[DID]]) -> None:
        """Attach files to several datasets in one call; attaching twice changes nothing."""
        rows = []
        for dataset, files in attachments.items():
            dataset = self.did(dataset)
            rows.append({"scope": dataset.scope, "name": dataset.name, "dids": [
                {"scope": d.scope, "name": d.name} for d in map(self.did, files)]})
        try:
            self.client.attach_dids_to_dids(rows, ignore_duplicate=True)
        except rucio_errors.DataIdentifierNotFound as error:
            raise DataManagementError(
                f"dataset or file of {', '.join(r['name'] for r in rows)} does not exist",
                f"Rucio: {error}", "create it with add_dataset (files: register_file) first",
            ) from error
        except rucio_errors.UnsupportedOperation as error:
            if "closed" in str(error):
                raise DataManagementError(
                    f"dataset {', '.join(r['name'] for r in rows)} is closed",
                    "a closed dataset cannot grow",
                    "attach to the run's open dataset before end_run closes it",
                ) from error
            raise translate(error, "cannot attach", "check the DIDs' types") from error

    # -- replicas -------------------------------------------------------------------------
    def _replica_states(self, did: DID) -> dict[str, str]:
        return {r.rse: r.state for r in self.list_replicas(did)}

    def list_replicas(self, did: DID) -> list[Replica]:
        did = self.did(did)
        rows = list(self.client.list_replicas(
            [{"scope": did.scope, "name": did.name}], schemes=["file"], all_states=True,
        ))
        replicas = []
        for row in rows:
            for rse, state in sorted(row.get("states", {}).items()):
                pfns = row.get("rses", {}).get(rse) or [self.pfn(did, rse)]
                replicas.append(Replica(did, rse, file_path(pfns[0]),
                                        REPLICA_STATE.get(state, state[:1])))
        return replicas

    def dataset_view(self, dataset: DID):
        """Every file of a dataset with its adler32 and replica states, in one call."""

        dataset = self.did(dataset)
        try:
            rows = self.client.list_replicas([{"scope": dataset.scope, "name": dataset.name}],
                                             all_states=True, resolve_archives=False)
            return {r["name"]: FileView(r.get("adler32"), {
                rse: REPLICA_STATE.get(state, state[:1]) for rse, state in r["states"].items()
            }) for r in rows}
        except rucio_errors.DataIdentifierNotFound:
            return {}

    def pfn(self, did: DID, rse: str) -> str:
        """Rucio's lfns2pfns for the RSE's file protocol (cached: deterministic)."""
        did = self.did(did)
        key = (did.scope, did.name, rse)
        if key not in self._pfns:
            self.rse(rse)
            lfn = f"{did.scope}:{did.name}"
            try:
                pfn = self.client.lfns2pfns(rse, [lfn], operation="write", scheme="file")[lfn]
            except rucio_errors.RucioException as error:
                raise translate(error, f"no file path for {did} on {rse}",
                                "the RSE needs a file protocol") from error
            self._pfns[key] = file_path(pfn)
        return self._pfns[key]

    def mark_available(self, did: DID, rse: str, path: str) -> None:
        self._available[self.did(did)][rse] = path

    def known_replicas(self, did: DID) -> dict | None:
        """Checksum and verified replica paths this process registered or transferred."""
        did = self.did(did)
        if did not in self._adler32:
            return None
        return {"adler32": self._adler32[did], "sources": dict(self._available.get(did, {}))}

    def local_path(self, did: DID, rse: str) -> str:
        if path := self._available.get(self.did(did), {}).get(rse):
            return path
        for replica in self.list_replicas(did):
            if replica.rse == rse and replica.state == "A":
                return replica.path
        raise DataManagementError(
            f"no available replica of {self.did(did)} on {rse}",
            "the file was not transferred there", f"add a rule for {did} to {rse} first",
        )

    def local_paths(self, dids: list[DID], rse: str) -> dict[DID, str]:
        """Paths this process verified are cached; others cost one lookup each."""
        return {did: self.local_path(did, rse) for did in dids}

    # -- rules ----------------------------------------------------------------------------
    def add_rules(
        self, dids: list[DID], rse_expression: str, copies: int = 1, activity: str = "default"
    ) -> list[RuleInfo]:
        """One rule per DID (a Rucio rule on a DID list would be one rule for all of them)."""
        return [self.add_rule(did, rse_expression, copies, activity) for did in dids]

    def add_rule(
        self, did: DID, rse_expression: str, copies: int = 1, activity: str = "default"
    ) -> RuleInfo:
        did = self.did(did)
        rule_id = self._create_rule(did, rse_expression, copies, activity)
        if self.transfers is not None:
            self.transfers.complete(rule_id)
        return self.rule(rule_id)

    def _create_rule(self, did: DID, expression: str, copies: int, activity: str) -> str:
        lifetime = (self.settings.archive_lifetime_s if activity in policy.ARCHIVE_ACTIVITIES
                    else self.settings.processing_lifetime_s)
        try:
            return self.client.add_replication_rule(
                [{"scope": did.scope, "name": did.name}], copies, expression,
                lifetime=lifetime, activity=policy.rucio_activity(activity), notify="Y",
                grouping="NONE", comment=f"epic-wfms {activity}",
            )[0]
        except rucio_errors.DuplicateRule:
            return self._existing_rule(did, expression)
        except rucio_errors.InvalidRSEExpression as error:
            raise DataManagementError(
                f"cannot create rule for {did}",
                f"RSE expression {expression!r} matches no RSE (known RSEs: "
                f"{', '.join(self.rses)}; attributes: site=..., type=DISK|TAPE)",
                "fix the RSE expression",
            ) from error
        except rucio_errors.RSEWriteBlocked as error:
            raise translate(error, f"cannot create rule for {did}", "unblock the RSE") from error
        except (rucio_errors.InsufficientTargetRSEs, rucio_errors.InvalidReplicationRule) as error:
            raise DataManagementError(
                f"rule for {did} asks {copies} copies on {expression!r}",
                f"only fewer RSEs match (Rucio: {error})",
                "lower copies or widen the expression",
            ) from error
        except rucio_errors.DataIdentifierNotFound as error:
            raise DataManagementError(
                f"cannot create rule for {did}", "the DID is not registered",
                "register the file first",
            ) from error

    def _existing_rule(self, did: DID, expression: str) -> str:
        for rule in self.client.list_did_rules(did.scope, did.name):
            if rule["rse_expression"] == expression and rule["account"] == self.settings.account:
                return rule["id"]
        raise DataManagementError(
            f"Rucio reports a duplicate rule for {did} on {expression!r} but lists none",
            "the rule was deleted concurrently", "retry",
        )

    def rule(self, rule_id: str) -> RuleInfo:
        r = self.client.get_replication_rule(rule_id)
        error = r.get("error")
        if r["state"] == "STUCK" and (r.get("comments") or "").startswith(FAILURE_PREFIX):
            error = r["comments"].removeprefix(FAILURE_PREFIX)
        return RuleInfo(r["id"], DID(r["scope"], r["name"]), r["rse_expression"], r["copies"],
                        r["state"], error)

    def wait_rule(self, rule_id: str, timeout: float | None = None) -> RuleInfo:
        """Poll until the rule leaves REPLICATING (events are the fast path; this the net)."""
        deadline = time.monotonic() + (timeout or self.settings.event_wait_s)
        while True:
            info = self.rule(rule_id)
            if info.state != "REPLICATING" or time.monotonic() > deadline:
                return info
            time.sleep(0.2)
