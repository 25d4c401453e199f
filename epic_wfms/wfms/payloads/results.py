"""What every payload shares: exit codes and writing its result file atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 64  # sysexits EX_DATAERR-like: the input cannot be used
EXIT_INJECTED = 65  # a failure requested by fault injection (tests, demos)


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write ``result`` as JSON via a temporary file, so no reader ever sees half a result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)
