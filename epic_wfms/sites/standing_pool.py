"""The standing worker pool's target size, as epic-wfms publishes it to Harvester (R3.9).

At ``run_imminent`` epic-wfms writes the pool's target size for a streaming queue, at
``end_run`` 0. ePIC's Harvester plugins (``plugins/harvester/epic_harvester/standing_pool``,
block keys ``targetFile``) read the file every cycle and keep that many workers alive. The
file is small JSON, ``{"target": N, "run_number": R, "updated": <epoch s>}``, replaced
atomically so Harvester never reads half of it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

#: where a site's Harvester reads the targets (the generated queue configs name it)
POOL_DIR = "/var/lib/epic-wfms/pools"


def pool_target_path(queue: str, pool_dir: Path | str = POOL_DIR) -> Path:
    return Path(pool_dir) / f"{queue}.json"


def write_pool_target(path: Path | str, target: int, run_number: int | None = None) -> None:
    """Atomically publish the pool's target size (0 stops the pool after the run)."""
    if target < 0:
        raise ValueError(f"pool target must be >= 0, got {target}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"target": target, "run_number": run_number, "updated": time.time()})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(body)
    os.replace(tmp, path)
