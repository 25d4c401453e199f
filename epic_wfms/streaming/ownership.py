"""Whose work is it? With several instances of a role (competing consumers on the same
queues, claims in the store), an instance recovers only what no live instance holds.

A job records the agent whose executor runs it (``jobs.agent``). An agent is live while its
row says ``running`` with a heartbeat within ``LIVE_S`` of the latest any agent wrote (and,
on this host, while its pid runs). Work
is orphaned when its job belongs to an agent that is not live (or to none); at an
instance's own start, also when it belongs to the instance's own name (an embedded
installation keeps its name across restarts). Work of a gone instance is taken by one
instance only, the leader. Work without a job yet names its holder too: an STF's claim
(``stfs.claimed_by``) and a merge (``merges.agent``); what names none (older rows, PanDA's
merges) is recovered only at an instance's start when no other instance of its role is
live.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from epic_wfms.lifecycle.agent import AgentStatus
from epic_wfms.store.schema import AgentRecord, utcnow

LIVE_S = 8.0  # heartbeats come every 2 s


def live_agents(session: Session, role: str) -> set[str]:
    """Agents of ``role`` that beat within LIVE_S of the latest heartbeat of any agent: after
    a database outage nobody could beat, so nobody looks dead for it."""
    latest = session.scalar(select(func.max(AgentRecord.heartbeat_at)).where(
        AgentRecord.status == AgentStatus.RUNNING))
    since = min(latest or utcnow(), utcnow()) - timedelta(seconds=LIVE_S)
    here = socket.gethostname()
    return {name for name, host, pid in session.execute(select(
        AgentRecord.name, AgentRecord.host, AgentRecord.pid).where(
        AgentRecord.role == role, AgentRecord.status == AgentStatus.RUNNING,
        AgentRecord.heartbeat_at >= since)) if host != here or pid_running(pid)}


def pid_running(pid: int) -> bool:
    """Whether a process of this host lives: a killed agent (or fast-path worker) is known
    dead at once, while its heartbeat still looks fresh for a few seconds."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Recovery:
    """One instance's view for one pass of recovery: ``me`` among the live instances of
    ``role``. Work of a gone instance is recovered by one instance only, the leader (the
    live instance with the least name), so two instances never adopt the same work."""

    def __init__(self, session: Session, role: str, me: str | None, at_start: bool) -> None:
        self.me, self.at_start = me, at_start
        self.peers = live_agents(session, role) - {me}
        self.leader = me is None or not self.peers or me < min(self.peers)
        # between starts, only the work of agents known to have died is taken (never that
        # of an installation that runs no agents, e.g. an embedded one on the same store)
        self.known = set() if at_start else set(session.scalars(
            select(AgentRecord.name).where(AgentRecord.role == role)))

    def orphaned(self, owner: str | None) -> bool:
        """Whether work whose job is run by ``owner`` is mine to recover now."""
        if owner is not None and owner == self.me:
            return self.at_start  # my previous incarnation's (same name): only at my start
        if not self.leader or owner in self.peers:
            return False
        return self.at_start or owner in self.known

    def unowned(self) -> bool:
        """Whether work with no job to name its holder is mine to recover now."""
        return self.at_start and not self.peers
