"""DDM interface modelled on Rucio: scopes, DIDs, datasets, replicas on RSEs, replication rules.

The embedded implementation keeps the catalog in the bookkeeping store and files on local
disk; the Rucio implementation (later issue) maps each call to ``rucio-clients``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class DID:
    scope: str
    name: str

    def __str__(self) -> str:
        return f"{self.scope}:{self.name}"


@dataclass(frozen=True)
class Replica:
    did: DID
    rse: str
    path: str
    state: str  # Rucio replica states: A available, C copying, B bad


@dataclass(frozen=True)
class RuleInfo:
    id: int | str  # Rucio rule ids are UUID strings
    did: DID
    rse_expression: str
    copies: int
    state: str  # Rucio rule states: REPLICATING, OK, STUCK
    error: str | None = None


@dataclass(frozen=True)
class FileSpec:
    """A file to register: where it already is, with the DAQ's size and checksum."""

    did: DID
    rse: str
    path: str
    bytes: int
    adler32: str
    meta: dict[str, Any] = field(default_factory=dict)


class DataManagement(Protocol):
    def add_dataset(self, did: DID, meta: dict[str, Any] | None = None) -> None:
        """Create an open dataset; creating an existing one is a no-op."""
        ...

    def register_file(self, spec: FileSpec) -> None:
        """Register the file DID and its replica on ``spec.rse``; idempotent."""
        ...

    def attach(self, dataset: DID, files: list[DID]) -> None: ...

    def register_and_attach(self, files: list[FileSpec], attachments: dict[DID, list[DID]]) -> None:
        """Bulk form of ``register_file`` + ``attach`` (Rucio: ``add_replicas`` then
        ``attach_dids_to_dids``): one round trip for a whole batch of STFs; idempotent."""
        ...

    def close_dataset(self, dataset: DID) -> None: ...

    def list_files(self, dataset: DID) -> list[DID]: ...

    def add_rule(
        self, did: DID, rse_expression: str, copies: int = 1, activity: str = "default"
    ) -> RuleInfo:
        """Ask for ``copies`` replicas on RSEs matching the expression; returns the rule."""
        ...

    def add_rules(
        self, dids: list[DID], rse_expression: str, copies: int = 1, activity: str = "default"
    ) -> list[RuleInfo]:
        """Bulk form of ``add_rule`` (one rule per DID, in order; Rucio takes a DID list)."""
        ...

    def list_replicas(self, did: DID) -> list[Replica]: ...

    def pfn(self, did: DID, rse: str) -> str:
        """Where a new file for ``did`` is written on ``rse`` (Rucio's lfns2pfns)."""
        ...

    def local_path(self, did: DID, rse: str) -> str:
        """Path of an available replica on ``rse`` (embedded: a file path)."""
        ...

    def local_paths(self, dids: list[DID], rse: str) -> dict[DID, str]:
        """Bulk ``local_path``: one catalog read for a batch of staged inputs."""
        ...
