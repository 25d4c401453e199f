"""Errors of the PanDA backend: what PanDA refused or could not be reached, and what to do."""

from __future__ import annotations

from epic_wfms.errors import EpicWfmsError


class PandaError(EpicWfmsError):
    """A PanDA server call that failed or was refused (communication or server-side code)."""


class TaskParamsError(EpicWfmsError):
    """A JEDI task-parameter dictionary that PanDA would reject; caught before submission."""
