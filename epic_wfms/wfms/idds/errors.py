"""The iDDS backend's error."""

from epic_wfms.errors import EpicWfmsError


class IddsError(EpicWfmsError):
    """An iDDS request that could not be made or was refused."""
