"""A brokerage decision and its reasons: answers "why did my job go there?" in the monitor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ASSIGNED, DEFERRED, NO_CANDIDATE = "assigned", "deferred", "no_candidate"


@dataclass(slots=True)
class Decision:
    job_id: str
    outcome: str  # assigned, deferred (retry later), no_candidate (cannot run anywhere)
    site: str | None
    queue: str | None
    queue_index: int
    score: float
    decided_at: float
    reasons: dict[str, Any] = field(default_factory=dict)
    clone_site: str | None = None
    clone_queue: str | None = None

    def explain(self) -> str:
        """One line for humans; the structured reasons are in ``reasons``."""
        if self.outcome != ASSIGNED:
            return f"{self.job_id}: {self.outcome}: {self.reasons.get('summary', '')}"
        parts = ", ".join(f"{k}={v:.2f}" for k, v in self.reasons.get("components", {}).items())
        runner = self.reasons.get("runner_up")
        vs = f"; runner-up {runner['queue']} ({runner['score']:.2f})" if runner else ""
        return f"{self.job_id} -> {self.site}/{self.queue} score {self.score:.2f} ({parts}){vs}"
