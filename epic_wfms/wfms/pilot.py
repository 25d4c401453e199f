"""A standing payload worker ("pilot"): one long-lived process runs many payloads in turn.

Starting a Python interpreter per STF costs more than reconstructing a small STF; like PanDA
pilots and the ePIC fast-path workers, a pilot stays up and takes one job after another.
Protocol: one JSON request per line on stdin ``{"payload": module, "args": [...]}``; one JSON
reply per line on stdout ``{"exit_code": int, "output": str}``. The payload's own output is
captured. End of stdin ends the pilot. A payload that crashes the interpreter kills only this
pilot; the pool reports the job failed and starts a new one.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import sys
import traceback

OUTPUT_TAIL = 2000


def run_one(payload: str, args: list[str]) -> tuple[int, str]:
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        try:
            code = importlib.import_module(payload).main(args)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        except Exception:
            traceback.print_exc()
            code = 70  # internal software error (sysexits)
    return int(code or 0), captured.getvalue()[-OUTPUT_TAIL:]


def main() -> int:
    replies = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        code, output = run_one(request["payload"], request["args"])
        replies.write(json.dumps({"exit_code": code, "output": output}) + "\n")
        replies.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
