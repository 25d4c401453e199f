"""How a worker runs its payload: one standing process for all its slices, or one per slice.

``StandingPayload`` starts ``python -m epic_wfms.fastpath.payload --serve`` once (it builds
its calibration, then says it is ready) and talks to it by JSON lines (``wfms/standing.py``,
the protocol the worker slots' pilots speak too). ``PerSlicePayload`` is
the per-slice start-up the standing pool exists to avoid; the benchmark runs both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from epic_wfms.wfms.standing import JsonLinesProcess, ProcessEnded

PAYLOAD = "epic_wfms.fastpath.payload"


class PayloadDied(ProcessEnded):
    """The payload process ended (killed, crashed) or stopped answering."""


def _command(mode: str, channels: int) -> list[str]:
    return [sys.executable, "-m", PAYLOAD, mode, "--channels", str(channels)]


class StandingPayload:
    """One payload process for all of a worker's slices (``wfms/standing.py``'s protocol)."""

    def __init__(self, channels: int, start_timeout_s: float = 60.0) -> None:
        self.standing = JsonLinesProcess(_command("--serve", channels), "payload")
        hello = self._reply(start_timeout_s, "starting")
        self.init_s = hello.get("init_s")

    @property
    def pid(self) -> int:
        return self.standing.pid

    def alive(self) -> bool:
        return self.standing.alive()

    def _reply(self, timeout_s: float, doing: str) -> dict[str, Any]:
        try:
            return self.standing.reply(timeout_s, doing)
        except ProcessEnded as ended:
            raise PayloadDied(ended.what, ended.why,
                              "the worker is replaced, the slice retried") from ended

    def run(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        try:
            self.standing.send(request)
        except ProcessEnded as ended:
            raise PayloadDied(ended.what, ended.why,
                              "the worker is replaced, the slice retried") from ended
        return self._reply(timeout_s, f"processing {request['slice']['name']}")

    def close(self) -> None:
        self.standing.close()


class PerSlicePayload:
    """A fresh payload process per slice (baseline): pays the start-up every time."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.pid: int | None = None
        self.init_s = None

    def alive(self) -> bool:
        return True

    def run(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        try:
            proc = subprocess.run(_command("--once", self.channels), input=json.dumps(request)
                                  + "\n", capture_output=True, text=True, timeout=timeout_s,
                                  check=False)
        except subprocess.TimeoutExpired as error:
            raise PayloadDied(f"payload exceeded {timeout_s:g}s", "too slow",
                              "the slice is retried") from error
        if proc.returncode != 0 or not proc.stdout.strip():
            raise PayloadDied(f"payload exited with {proc.returncode}", proc.stderr[-500:],
                              "the slice is retried")
        return json.loads(proc.stdout)

    def close(self) -> None:
        pass


def start_payload(runner: str, channels: int) -> StandingPayload | PerSlicePayload:
    return StandingPayload(channels) if runner == "standing" else PerSlicePayload(channels)
