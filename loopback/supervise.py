"""Long-running server processes of the loopback stack, watched and restarted.

A ``Supervised`` process runs in its own session (so it and all its children are stopped as
one process group); a ``Supervisor`` thread checks each one every few seconds: the process
must be alive and each of its named logs must have been written within its allowed age
(an agent whose loop died stops logging while its parent lives on). A process that fails
the check is stopped (its whole group) and started again; every restart is recorded with
its reason in ``restarts`` and in the supervisor's log.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from loopback.common import stop_process_group


@dataclass
class Supervised:
    """One server process: ``argv`` with ``env`` in ``cwd``; stdout/stderr to ``out``.

    ``fresh`` maps log files to the age (s) each may reach before the process counts as
    hung (an agent's loop died while its master lives on); checked only ``grace_s`` after a
    (re)start."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    out: Path
    fresh: dict[Path, float] = field(default_factory=dict)
    grace_s: float = 60.0
    restarts: list[tuple[float, str]] = field(default_factory=list)
    _proc: subprocess.Popen | None = None
    _started: float = 0.0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with self.out.open("ab") as out:
            self._proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=out,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
        self._started = time.monotonic()

    def stop(self) -> None:
        if self._proc is not None:
            stop_process_group(self._proc, grace_s=5)
            self._proc = None

    def problem(self) -> str | None:
        """Why this process needs a restart, or None."""
        if self._proc is None:
            return None
        code = self._proc.poll()
        if code is not None:
            return f"exited with code {code}"
        if time.monotonic() - self._started < self.grace_s:
            return None
        now = time.time()
        for log, max_age in self.fresh.items():
            try:
                age = now - log.stat().st_mtime
            except OSError:
                return f"{log.name} was never written"
            if age > max_age:
                return f"{log.name} not written for {age:.0f} s (allowed {max_age:.0f} s)"
        return None

    def restart(self, reason: str) -> None:
        self.restarts.append((time.time(), reason))
        self.stop()
        self.start()


@dataclass
class Supervisor:
    """Checks its processes every ``period_s`` in a daemon thread; restarts the failing."""

    processes: list[Supervised]
    log: Path
    period_s: float = 5.0
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Supervisor:
        with self._lock:
            for proc in self.processes:
                proc.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="loopback-supervisor",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        with self._lock:
            for proc in reversed(self.processes):
                proc.stop()

    def check(self) -> list[str]:
        """One round of checks (also run by the thread); returns what was restarted."""
        done = []
        with self._lock:
            if self._stop.is_set():
                return done
            for proc in self.processes:
                reason = proc.problem()
                if reason is None:
                    continue
                with self.log.open("a") as out:
                    out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
                              f"restarting {proc.name} (pid {proc.pid}): {reason}\n")
                proc.restart(reason)
                done.append(f"{proc.name}: {reason}")
        return done

    def _watch(self) -> None:
        while not self._stop.wait(self.period_s):
            self.check()


def environ_without(*prefixes: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
