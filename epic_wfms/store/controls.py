"""Operator controls the streaming agents obey, kept in the store so every process sees them.

  processing hold   the latest ``suspend``/``resume`` (monitor's write API)
  site offline      per site, the latest ``site_offline``/``site_online`` (``epic-wfms sites
                    offline|online``): an offline E1 gets no new STFs (streaming/decision_box)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from epic_wfms.store.database import Database
from epic_wfms.store.schema import OperatorCommandRecord

SITE_OFFLINE, SITE_ONLINE = "site_offline", "site_online"


def processing_held(session: Session) -> bool:
    """True while the latest operator suspend/resume is a suspend (monitor's write API)."""
    action = session.scalar(select(OperatorCommandRecord.action).where(
        OperatorCommandRecord.action.in_(("suspend", "resume")))
        .order_by(OperatorCommandRecord.id.desc()).limit(1))
    return action == "suspend"


@dataclass(frozen=True, slots=True)
class SiteOffline:
    """Why, by whom and since when an operator took a site offline."""

    site: str
    reason: str
    by: str
    since: datetime


def sites_offline(session: Session) -> dict[str, SiteOffline]:
    """The sites whose latest operator command is ``site_offline``."""
    latest: dict[str, OperatorCommandRecord] = {}
    for command in session.scalars(select(OperatorCommandRecord).where(
            OperatorCommandRecord.action.in_((SITE_OFFLINE, SITE_ONLINE)))
            .order_by(OperatorCommandRecord.id)):
        latest[command.target_id] = command
    return {site: SiteOffline(site, str(c.params.get("reason", "")), c.username,
                              c.requested_at)
            for site, c in latest.items() if c.action == SITE_OFFLINE}


def set_site_online(db: Database, site: str, online: bool, reason: str, username: str,
                    role: str = "operator") -> OperatorCommandRecord:
    """Record an operator taking ``site`` offline (no new STFs, its backlog rerouted) or
    bringing it back (it gets its share again)."""
    action = SITE_ONLINE if online else SITE_OFFLINE
    with db.session() as session:
        was = site in sites_offline(session)
        command = OperatorCommandRecord(
            action=action, target_kind="site", target_id=site, params={"reason": reason},
            username=username, role=role,
            result=("online" if online else "offline") + (
                " (it already was)" if was != online else ""))
        session.add(command)
        session.flush()
        session.expunge(command)
        return command
