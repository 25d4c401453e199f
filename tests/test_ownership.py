"""Whose work is it (streaming/ownership.py): with several instances of a role, each
recovers only the work of instances that are gone, and only one of them does."""

from __future__ import annotations

from datetime import timedelta

from epic_wfms.store.database import Database
from epic_wfms.store.schema import AgentRecord, utcnow
from epic_wfms.streaming.ownership import Recovery


def agents(db: Database, **beats: float) -> None:
    """name=seconds since its last heartbeat (role process)."""
    now = utcnow()
    with db.session() as session:
        for name, age in beats.items():
            session.merge(AgentRecord(name=name, role="process", host="h", pid=1,
                                      status="running", heartbeat_at=now - timedelta(seconds=age)))


def view(db: Database, me: str | None, at_start: bool) -> Recovery:
    with db.session() as session:
        return Recovery(session, "process", me, at_start)


def test_only_the_leader_adopts_the_work_of_a_dead_peer(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'store.sqlite'}")
    db.create_schema()
    agents(db, a=0.5, b=1.0, dead=60.0)
    a, b = view(db, "a", at_start=False), view(db, "b", at_start=False)
    assert a.orphaned("dead") and not b.orphaned("dead")  # "a" leads: the least live name
    assert not a.orphaned("b") and not b.orphaned("a")  # a live peer's work is its own
    assert not a.orphaned("a")  # my own, between starts
    assert not a.orphaned(None) and not a.orphaned("stranger")  # no agent known by that name
    restarted = view(db, "a", at_start=True)
    assert restarted.orphaned("a") and restarted.orphaned(None)  # my previous incarnation
    assert not restarted.unowned()  # claims without a job may be a live peer's
    db.dispose()


def test_after_a_database_outage_nobody_looks_dead(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'store.sqlite'}")
    db.create_schema()
    agents(db, a=40.0, b=41.0)  # nobody could beat for 40 s
    assert not view(db, "a", at_start=False).orphaned("b")
    alone = Database(f"sqlite:///{tmp_path / 'alone.sqlite'}")
    alone.create_schema()
    assert view(alone, "a", at_start=True).unowned()  # no peer at all: everything is mine
    db.dispose()
    alone.dispose()
