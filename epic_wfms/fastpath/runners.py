"""How a worker runs its payload: one standing process for all its slices, or one per slice.

``StandingPayload`` starts ``python -m epic_wfms.fastpath.payload --serve`` once (it builds
its calibration, then says it is ready) and talks to it by JSON lines. ``PerSlicePayload`` is
the per-slice start-up the standing pool exists to avoid; the benchmark runs both.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
from typing import Any

from epic_wfms.errors import EpicWfmsError

PAYLOAD = "epic_wfms.fastpath.payload"


class PayloadDied(EpicWfmsError):
    """The payload process ended (killed, crashed) or stopped answering."""


def _command(mode: str, channels: int) -> list[str]:
    return [sys.executable, "-m", PAYLOAD, mode, "--channels", str(channels)]


class StandingPayload:
    def __init__(self, channels: int, start_timeout_s: float = 60.0) -> None:
        self.process = subprocess.Popen(
            _command("--serve", channels), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, bufsize=1,
        )
        hello = self._read(start_timeout_s, "starting")
        self.init_s = hello.get("init_s")

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def _read(self, timeout_s: float, doing: str) -> dict[str, Any]:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        if not ready:
            self.process.kill()
            raise PayloadDied(f"payload {self.pid} silent for {timeout_s:g}s while {doing}",
                              "it hangs or is overloaded", "it was killed; the slice is retried")
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            raise PayloadDied(f"payload {self.pid} died while {doing} (exit code {code})",
                              "killed or crashed", "the worker is replaced, the slice retried")
        return json.loads(line)

    def run(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except OSError as error:
            raise PayloadDied(f"payload {self.pid} unavailable: {error}", "its pipe is closed",
                              "the worker is replaced, the slice retried") from error
        return self._read(timeout_s, f"processing {request['slice']['name']}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()  # end of input: the payload exits
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


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
