"""Does Harvester itself accept a queue configuration? Ask its ``QueueConfigMapper``.

``load_with_harvester`` writes the configuration into a scratch ``PANDA_HOME`` (with a
``panda_harvester.cfg`` from Harvester's template), runs ``load_queueconfig.py`` with
Harvester's Python and returns what Harvester kept, which plugin objects it could build, and
every WARNING/ERROR its mapper logged. Nothing is contacted: no PanDA server, no batch system.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopback.common import PLUGINS, run_checked
from loopback.harvester.config import QUEUE_CONFIG, TEMPLATE, harvester_cfg
from loopback.harvester.install import default_venv, ensure_venv, site_packages, template
from loopback.panda.server import COMMON_CFG

HERE = Path(__file__).resolve().parent
NOWHERE = "http://127.0.0.1:9/api/v1"  # the discard port: nothing is called


@dataclass(frozen=True)
class HarvesterLoad:
    queues: dict[str, dict[str, Any]]  # queue -> mapType, truePilot, maxWorkers, plugins
    active: list[str]
    broken_plugins: dict[str, str]  # "<queue>.<section>" -> the constructor's error
    bases: dict[str, list[str]]  # plugin class -> its classes (module.qualname), in MRO order
    mapper_log: list[str]  # WARNING/ERROR lines of Harvester's queue config mapper


def load_with_harvester(queue_config: dict[str, Any], workdir: Path,
                        cfg_fragments: tuple[str, ...] = (),
                        venv: Path | None = None) -> HarvesterLoad:
    """Load ``queue_config`` (the panda_queueconfig.json content) as Harvester does, with
    ``cfg_fragments`` (generated panda_harvester.cfg fragments) merged into its template."""
    venv = ensure_venv(venv or default_venv())
    home = workdir / "home"
    etc = home / "etc" / "panda"
    for d in (etc, home / "log", home / "fifo"):
        d.mkdir(parents=True, exist_ok=True)
    (etc / QUEUE_CONFIG).write_text(json.dumps(queue_config))
    (etc / "panda_common.cfg").write_text(COMMON_CFG.format(logdir=home / "log", level="INFO"))
    token = home / "token"
    token.write_text("none")
    (etc / "panda_harvester.cfg").write_text(harvester_cfg(
        template(venv, TEMPLATE).read_text(), list(cfg_fragments), harvester_id="epic-conformance",
        home=home, queues=["ALL"], server_url=NOWHERE, api_url=NOWHERE, token_file=token,
        cycle_s=60))
    packages = site_packages(venv)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PANDA", "PYTHONPATH"))}
    env.update(PANDA_HOME=str(home), TZ="UTC", PYTHONPATH=":".join(
        [str(packages / "pandacommon"), str(packages), str(PLUGINS / "harvester")]))
    out = run_checked([str(venv / "bin" / "python"), str(HERE / "load_queueconfig.py")],
                      "loading the queue configuration in Harvester",
                      env=env, cwd=home).stdout
    result = json.loads(out.strip().splitlines()[-1])
    log = home / "log" / "panda-queue_config_mapper.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return HarvesterLoad(result["queues"], result["active"], result["broken_plugins"],
                         result["bases"],
                         [ln for ln in lines if " WARNING " in ln or " ERROR " in ln])
