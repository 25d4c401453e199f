"""DDM interface modelled on Rucio: scopes, DIDs, datasets, replicas on RSEs, replication rules.

The embedded implementation keeps the catalog in the bookkeeping store and files on local
disk, and completes rules at once; the Rucio implementation (``ddm/rucio``) maps each call to
``rucio-clients``, and its rules complete asynchronously (transfers, then Rucio's events).
"""

from __future__ import annotations

from collections.abc import Callable
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
class FileView:
    """One file of a dataset as the catalog sees it (reconciliation against the store)."""

    adler32: str | None  # None: the backend does not say
    states: dict[str, str]  # RSE -> replica state letter


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

    def reopen_dataset(self, dataset: DID) -> None:
        """Open a closed dataset again (a late STF of a finalized run); idempotent."""
        ...

    def is_open(self, dataset: DID) -> bool:
        """False once the dataset was closed (nothing more can be attached)."""
        ...

    def list_files(self, dataset: DID) -> list[DID]: ...

    def dataset_view(self, dataset: DID) -> dict[str, FileView]:
        """Every file of the dataset by name, with checksum and replica states (one bulk
        read where the backend can)."""
        ...

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

    def when_rule_done(self, rule_id: int | str, callback: Callable[[RuleInfo], None]) -> None:
        """Call back once the rule has left REPLICATING (at once if it has); never blocks."""
        ...

    def wait_rule(self, rule_id: int | str, timeout: float | None = None) -> RuleInfo:
        """Block until the rule leaves REPLICATING or ``timeout`` passes (its state then)."""
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

    def close(self) -> None:
        """Stop what the backend runs in the background (event listeners, rule watchers)."""
        ...
