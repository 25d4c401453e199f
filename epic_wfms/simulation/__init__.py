"""Discrete-event simulation of the ePIC fabric driven by the real brokerage code (R5.6)."""

from epic_wfms.simulation.fabric_sim import FabricSimulation, Outage, SimSettings, parse_outage

__all__ = ["FabricSimulation", "Outage", "SimSettings", "parse_outage"]
