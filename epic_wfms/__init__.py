"""epic-wfms: the ePIC workflow-management layer on top of PanDA/JEDI, iDDS, Rucio, Harvester."""

from epic_wfms.version import package_version

__version__ = package_version()
