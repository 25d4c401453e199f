"""A standing process spoken to in JSON lines: the one process protocol of local payloads.

The worker slots' pilots (``wfms/pilot.py``) and the fast path's standing slice payloads
(``fastpath/payload.py --serve``) are both long-lived child processes that read one JSON
request per line on stdin and answer one JSON reply per line on stdout, in order. Requests
may be written back to back (pipelined) and their replies read one by one. A child that
stays silent past the timeout is killed; one that ends or closes its stdout is reported with
its exit code. Either way the caller gets ``ProcessEnded`` and starts a new process.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
from typing import Any

from epic_wfms.errors import EpicWfmsError


class ProcessEnded(EpicWfmsError):
    """The standing process ended (killed, crashed) or stopped answering (it was killed)."""


class JsonLinesProcess:
    def __init__(self, command: list[str], what: str = "process") -> None:
        self.what = what
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        bufsize=0)
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, *requests: dict[str, Any]) -> None:
        """Write the requests back to back; their replies come in the same order."""
        try:
            self.process.stdin.write(b"".join(json.dumps(r).encode() + b"\n" for r in requests))
        except OSError as error:
            raise ProcessEnded(f"{self.what} {self.pid} unavailable: {error}",
                               "its input pipe is closed (the process ended)",
                               "start a new one") from error

    def reply(self, timeout_s: float, doing: str = "working") -> dict[str, Any]:
        """The next reply; a silent process is killed after ``timeout_s``."""
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], timeout_s)
            if not ready:
                self.process.kill()
                self.process.wait()
                raise ProcessEnded(f"{self.what} {self.pid} exceeded {timeout_s:g}s {doing}; "
                                   "killed", "it hangs or is overloaded", "start a new one")
            chunk = os.read(fd, 65536)
            if not chunk:
                code = self.process.wait()
                raise ProcessEnded(f"{self.what} {self.pid} died {doing} (exit code {code})",
                                   "it was killed or crashed", "start a new one")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def close(self, grace_s: float = 10.0) -> None:
        """End of input: the process finishes what it holds and exits (killed after
        ``grace_s``)."""
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=grace_s)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
