"""epic-wfms: the ePIC workflow-management layer on top of PanDA/JEDI, iDDS, Rucio, Harvester."""

__version__ = "0.1.0"
