"""Render the transition table as Markdown (docs/statemachine.md embeds this output)."""

from __future__ import annotations

from epic_wfms.model.detector import DetectorState
from epic_wfms.statemachine.table import ALLOWED_FLAVOURS, ALLOWED_READINESS, TRANSITIONS


def transition_table_markdown() -> str:
    lines = ["| state | readiness substates | data flavours |", "|---|---|---|"]
    for state in DetectorState:
        readiness = ", ".join(sorted(r.value for r in ALLOWED_READINESS[state]))
        flavours = ", ".join(sorted(f.value for f in ALLOWED_FLAVOURS[state]))
        lines.append(f"| {state.value} | {readiness} | {flavours} |")
    lines += ["", "| from | trigger | to | guard | run effect | meaning |",
              "|---|---|---|---|---|---|"]
    for t in TRANSITIONS:
        source = f"{t.source.value}/{' or '.join(sorted(r.value for r in t.source_readiness))}"
        target = (
            f"{(t.target or t.source).value}/{t.target_readiness.value}"
            if t.target_readiness else "(unchanged)"
        )
        lines.append(f"| {source} | `{t.trigger.value}` | {target} | {t.guard.value} | "
                     f"{t.effect.value} | {t.description} |")
    return "\n".join(lines)
