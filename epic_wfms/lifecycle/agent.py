"""Agent lifecycle (``agents.status``): one row per agent process (its name has the pid)."""

from __future__ import annotations

from enum import StrEnum

from epic_wfms.lifecycle.core import Lifecycle, move, new


class AgentStatus(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"


AGENT = Lifecycle(
    "agent", "agents.status", AgentStatus,
    {
        AgentStatus.RUNNING: "started; heartbeats every few seconds (a stale heartbeat means "
                             "it died without stopping)",
        AgentStatus.STOPPED: "stopped by SIGTERM/SIGINT, or the daq agent's run ended",
    },
    [
        new(AgentStatus.RUNNING, "agent: first heartbeat"),
        move([AgentStatus.RUNNING], AgentStatus.STOPPED, "agent: stopping"),
    ],
)
