"""Revoked tokens: one token (by its ``jti``) or every token of an identity (issuer +
subject) issued up to the moment of revocation.

A revocation is an operator command (``revoke_token``, kept in the command log with who and
why), so every monitor replica on the same store sees it: each re-reads the revocations at
most every ``REFRESH_S`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from epic_wfms.store.schema import OperatorCommandRecord

ACTION = "revoke_token"
REFRESH_S = 2.0


@dataclass(frozen=True)
class Revocations:
    jtis: frozenset[str] = frozenset()
    identities: dict[tuple[str, str], float] = field(default_factory=dict)  # -> revoked at

    def reason(self, claims: dict[str, Any]) -> str | None:
        """Why a verified token is revoked, or None."""
        if claims.get("jti") in self.jtis:
            return f"token {claims['jti']} was revoked"
        until = self.identities.get((claims.get("iss"), claims.get("sub")))
        if until is not None and float(claims.get("iat", 0)) <= until:
            return "every token of this identity issued before its revocation was revoked"
        return None


def load(session: Session) -> Revocations:
    jtis, identities = set(), {}
    for params in session.scalars(select(OperatorCommandRecord.params).where(
            OperatorCommandRecord.action == ACTION)):
        if params.get("jti"):
            jtis.add(params["jti"])
        elif params.get("subject") is not None:
            key = (params.get("issuer"), params["subject"])
            identities[key] = max(identities.get(key, 0.0), float(params.get("before", 0)))
    return Revocations(frozenset(jtis), identities)


def record(session: Session, username: str, roles: str, reason: str, *, jti: str | None = None,
           issuer: str | None = None, subject: str | None = None) -> OperatorCommandRecord:
    """Record a revocation (the caller's session commits it)."""
    if jti:
        target, params, result = jti, {"jti": jti}, f"token {jti} revoked"
    else:
        target = f"{issuer} {subject}"[:255]
        params = {"issuer": issuer, "subject": subject, "before": time.time()}
        result = f"every token of {subject} at {issuer} issued until now revoked"
    command = OperatorCommandRecord(action=ACTION, target_kind="token", target_id=target,
                                    params={**params, "reason": reason}, username=username[:100],
                                    role=roles[:40], result=result)
    session.add(command)
    session.flush()
    return command


class RevocationCache:
    """The store's revocations, re-read at most every ``REFRESH_S`` seconds."""

    def __init__(self, read: Callable[[], Revocations]) -> None:
        self._read = read
        self._current = Revocations()
        self._at = -REFRESH_S
        self._lock = threading.Lock()

    def current(self) -> Revocations:
        with self._lock:
            if time.monotonic() - self._at >= REFRESH_S:
                self._current, self._at = self._read(), time.monotonic()
            return self._current

    def invalidate(self) -> None:
        with self._lock:
            self._at = -REFRESH_S
