"""A record lifecycle as data: its states, the moves allowed between them, named groups.

One table per lifecycle (stf.py, job.py, merge.py, run.py, ...), as the detector's transition
table is one table (statemachine/table.py); docs/lifecycles.md is generated from them
(``epic-wfms lifecycles``). The code consults the table where it moves a record:

- ``check(source, target)`` returns ``target`` or raises ``IllegalTransitionError``: for a
  record read and written in one session;
- ``where(column, target)`` is the condition of a compare-and-set update: only rows in a
  state the table allows the move from are changed, any other row is left as it is.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from epic_wfms.errors import IllegalTransitionError

S = TypeVar("S", bound=StrEnum)


@dataclass(frozen=True)
class Move(Generic[S]):
    """``sources`` -> ``target``, made by ``by``; no sources: a record created in ``target``."""

    sources: tuple[S, ...]
    target: S
    by: str


class Group(frozenset):
    """A named set of states the code asks about (e.g. which jobs are still active); use it
    as the set it is (``status in ACTIVE``, ``column.in_(ACTIVE)``)."""

    name: str
    meaning: str

    def __new__(cls, name: str, states: Iterable[StrEnum], meaning: str) -> Group:
        self = super().__new__(cls, states)
        self.name, self.meaning = name, meaning
        return self

    def __repr__(self) -> str:
        return f"Group({self.name}: {_names(self)})"


def move(sources: Iterable[S], target: S, by: str) -> Move[S]:
    return Move(tuple(sources), target, by)


def new(target: S, by: str) -> Move[S]:
    """A record is created in ``target``."""
    return Move((), target, by)


def group(name: str, states: Iterable[S], meaning: str) -> Group:
    return Group(name, states, meaning)


class Lifecycle(Generic[S]):
    """The states of one record column and every move the code may make between them."""

    def __init__(self, name: str, column: str, states: type[S], meanings: dict[S, str],
                 moves: Iterable[Move[S]], groups: Iterable[Group] = ()) -> None:
        self.name, self.column, self.states = name, column, states
        self.meanings = dict(meanings)
        self.moves = tuple(moves)
        self.groups = tuple(groups)
        self._pairs = {(s, m.target) for m in self.moves for s in m.sources}
        self._values = {s.value for s in states}
        self.initial = frozenset(m.target for m in self.moves if not m.sources)
        self.final = frozenset(s for s in states if not any(s in m.sources for m in self.moves))
        self._validate()

    def _validate(self) -> None:
        members = set(self.states)
        if set(self.meanings) != members:
            raise ValueError(f"{self.name}: every state needs a meaning; "
                             f"missing {sorted(members - set(self.meanings))}")
        used = {s for m in self.moves for s in (*m.sources, m.target)}
        if used - members or not self.initial:
            raise ValueError(f"{self.name}: moves use {sorted(used - members)} outside the "
                             "states, or no state is initial")
        unreachable = members - {m.target for m in self.moves}
        if unreachable:
            raise ValueError(f"{self.name}: no move reaches {sorted(unreachable)}")
        for g in self.groups:
            if not g <= members:
                raise ValueError(f"{self.name}: group {g.name} has states outside the table")

    def allowed(self, source: str | None, target: str) -> bool:
        """Whether the table has ``source -> target`` (``None``: creating the record)."""
        if target not in self._values or (source is not None and source not in self._values):
            return False  # a value outside the lifecycle (a bug, or another vocabulary)
        if source is None:
            return target in self.initial
        return (self.states(source), self.states(target)) in self._pairs

    def sources(self, target: S) -> frozenset[S]:
        """Every state the table allows a move to ``target`` from."""
        return frozenset(s for s, t in self._pairs if t == target)

    def check(self, source: str | None, target: S, subject: str = "") -> S:
        """``target``, if the table allows the move; else an error saying what is legal."""
        if self.allowed(source, target):
            return target
        about = f" of {subject}" if subject else ""
        if source is None:
            legal = f"records are created as {_names(self.initial)}"
        else:
            onward = sorted(t for s, t in self._pairs if s == source)
            legal = f"from {source} the moves are to {_names(onward) or 'nothing (final)'}"
        raise IllegalTransitionError(
            f"{self.name}{about}: {source or '(new)'} -> {target} is not an allowed move",
            f"the {self.name} lifecycle ({self.column}) says {legal}",
            "this is a bug in the code making the move; the table is epic_wfms/lifecycle/, "
            "docs/lifecycles.md",
        )

    def where(self, column: Any, target: S, sources: Iterable[S] | None = None) -> Any:
        """Compare-and-set condition for moving rows to ``target``: ``column`` holds one of
        ``sources`` (default: all the table allows). A source the table does not allow
        there is a bug, refused at once."""
        legal = self.sources(target)
        chosen = legal if sources is None else frozenset(sources)
        for source in sorted(chosen - legal):
            self.check(source, target)
        if not chosen:
            raise ValueError(f"{self.name}: no move leads to {target}; records are created "
                             "in it")
        # (a = x OR a = y), not IN: an expanding IN cannot be used in an executemany update
        return functools.reduce(operator.or_, (column == s for s in sorted(chosen)))

    def __repr__(self) -> str:
        return f"Lifecycle({self.name!r}, {self.column!r})"


def _names(states: Iterable[str]) -> str:
    return ", ".join(sorted(str(s) for s in states))
