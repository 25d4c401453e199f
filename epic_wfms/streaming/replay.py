"""Replaying dead letters (``epic-wfms deadletters replay``): the stored body, or one the
operator corrected, is sent again to where it failed, and the dead letter is resolved.

A testbed message goes to the bridge's own replay queue (``/queue/epic.testbed.replay``), not
back to the testbed's topic, where the testbed's agents would see it again. Copies of one
malformed message dead-lettered by several subscriptions of a topic are sent once. If the
replayed message fails again, it becomes a new dead letter with the new reason.
"""

from __future__ import annotations

from epic_wfms.bus import MessageBus
from epic_wfms.bus import destinations as dest
from epic_wfms.store.database import Database
from epic_wfms.store.deadletters import resolve
from epic_wfms.store.schema import DeadLetterRecord
from epic_wfms.streaming.testbed_bridge import SUBSCRIPTION


def replay_destination(letter: DeadLetterRecord) -> str:
    if letter.subscription.startswith(SUBSCRIPTION):
        return dest.TESTBED_REPLAY
    return letter.destination


def replay(db: Database, bus: MessageBus, letters: list[DeadLetterRecord], by: str,
           body: str | None = None) -> list[int]:
    """Send each open letter's body (or ``body``) again; return the ids resolved."""
    sent: set[tuple[str, str]] = set()
    done = []
    for letter in letters:
        if letter.resolved_at is not None:
            continue
        target = (replay_destination(letter), body if body is not None else letter.body)
        if target not in sent:
            bus.publish_raw(*target)
            sent.add(target)
        done.append(letter.id)
    note = f"replayed by {by}" + (" with a corrected body" if body is not None else "")
    resolve(db, done, note)
    return done
