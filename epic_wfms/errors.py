"""User-facing errors: each says what happened, why, and what to do next."""

from __future__ import annotations


class EpicWfmsError(Exception):
    """Base error. ``what`` happened, ``why`` it is refused, ``fix`` tells the user what to do."""

    def __init__(self, what: str, why: str = "", fix: str = "") -> None:
        self.what, self.why, self.fix = what, why, fix
        parts = [what]
        if why:
            parts.append(f"why: {why}")
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__(" | ".join(parts))


class InvalidRecordError(EpicWfmsError):
    """A domain record (run, STF, TF sample) failed validation."""


class IllegalTransitionError(EpicWfmsError):
    """A detector/DAQ state transition or state/substate pair that the table does not allow."""


class MalformedMessageError(EpicWfmsError):
    """A bus message that does not follow the schema; it is dead-lettered, never dropped."""


class ConfigurationError(EpicWfmsError):
    """A configuration file or value that cannot be used."""


class DataManagementError(EpicWfmsError):
    """A DDM operation (DID, replica, rule) that cannot be carried out."""


class RefusedMessageError(MalformedMessageError):
    """A well-formed message whose content crosses a trust boundary (a path outside its area,
    a name against the naming policy): dead-lettered at once, never retried."""
