"""Rucio as the DDM backend (docs/rucio.md): needs ``rucio-clients`` and a Rucio server."""

from epic_wfms.ddm.rucio.backend import RucioDDM

__all__ = ["RucioDDM"]
