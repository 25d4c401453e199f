"""E0 DAQ simulator (writes real STF files, plays the run control); not part of E1 production."""

from epic_wfms.daq.simulator import DaqSettings, DaqSimulator

__all__ = ["DaqSettings", "DaqSimulator"]
