"""Gating of STF processing by the detector state in which the STF was captured."""

from __future__ import annotations

from epic_wfms.config import GateAction
from epic_wfms.errors import ConfigurationError


def gate_action(gate: dict[str, GateAction], state: str, substate: str) -> GateAction:
    """``state/substate`` wins over ``state/*``; an unlisted state is a configuration error."""
    for key in (f"{state}/{substate}", f"{state}/*"):
        if key in gate:
            return gate[key]
    raise ConfigurationError(
        f"no processing gate for STFs captured in {state}/{substate}",
        f"processing.gate lists: {', '.join(sorted(gate))}",
        f"add '{state}/{substate}' or '{state}/*' with process, defer or archive_only",
    )
