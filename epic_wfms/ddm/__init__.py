"""Data management: a Rucio-shaped interface, an embedded implementation, and Rucio
(``ddm/rucio``, chosen by ``ddm.backend: rucio``)."""

from epic_wfms.ddm.embedded import EmbeddedDDM
from epic_wfms.ddm.interface import DID, DataManagement, FileSpec, Replica, RuleInfo
from epic_wfms.ddm.rse import LocalRSE

__all__ = ["DID", "DataManagement", "EmbeddedDDM", "FileSpec", "LocalRSE", "Replica", "RuleInfo"]
