"""The whole loopback PanDA stack, running as a chain: Rucio, PanDA + JEDI, Harvester, pilots.

``panda_stack(workdir, rucio=...)`` is a context manager yielding a ``PandaStack``:

- **Rucio**: the given ``RucioEndpoint`` (a running ``LocalRucioServer``'s config and RSEs),
  with scope ``epic``;
- **PanDA server** (``LocalPandaServer(chain=True)``): the API, JEDI's master process and the
  server's daemons (Adder with ePIC's plug-in registering outputs in Rucio, the heartbeat
  watcher), watched and restarted (``stack.panda.supervisor``);
- **Harvester** (``LocalHarvester``) keeping pilots at the queues (``pools``: a standing pool
  target, or None for a worker per activated job); every pilot a real Pilot 3 reading the
  jobs' inputs from the queue's RSE directory and moving outputs there (Rucio's paths).

A task submitted to the stack (``stack.connection()``) is refined, fed from Rucio, split into
jobs, activated, run by pilots and its outputs registered and attached in Rucio, with
nobody driving it. Stopped in reverse order when the ``with`` block ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from epic_wfms.config import RucioConfig
from epic_wfms.ddm.rse import LocalRSE
from epic_wfms.ddm.rucio.backend import RucioDDM
from epic_wfms.wfms.panda.client import PandaConnection, PandaSettings
from loopback.harvester import LocalHarvester
from loopback.panda.server import LocalPandaServer, PandaIdentity
from loopback.rucio.server import add_scope


@dataclass(frozen=True)
class RucioEndpoint:
    """A Rucio server the stack uses: its ``rucio.cfg`` (client section: host, account,
    userpass), its URL and credentials, and its RSEs (directories of this machine)."""

    config_file: Path
    url: str
    username: str
    password: str
    rses: tuple[LocalRSE, ...]

    def rse_roots(self) -> dict[str, Path]:
        return {rse.name: rse.root for rse in self.rses if rse.deterministic}


@dataclass
class PandaStack:
    rucio: RucioEndpoint
    panda: LocalPandaServer
    harvester: LocalHarvester

    @property
    def queues(self) -> dict[str, str]:
        """PanDA queue -> its RSE."""
        return {q: self.panda.queues[q] for q in self.harvester.pools}

    @property
    def panda_url(self) -> str:
        return self.panda.url

    def identity(self, name: str = "Epic Production", production: bool = True
                 ) -> PandaIdentity:
        return self.panda.identity(name, production)

    def connection(self, production: bool = True) -> PandaConnection:
        who = self.identity(production=production)
        return PandaConnection(PandaSettings(self.panda.url, who.token, who.auth_vo))

    def restarts(self) -> dict[str, list[tuple[float, str]]]:
        """What the supervisor restarted (JEDI, the server's daemons), with reasons."""
        sup = self.panda.supervisor
        return {p.name: list(p.restarts) for p in sup.processes} if sup else {}


@contextmanager
def panda_stack(workdir: Path, rucio: RucioEndpoint, *,
                pools: dict[str, int | None] | None = None, max_workers: int = 3,
                jedi_loop_s: int = 2, heartbeat_timeout_s: int = 150,
                harvester_cycle_s: int = 5, fault_markers: Path | None = None,
                fastpath_config: Path | None = None) -> Iterator[PandaStack]:
    """Start the stack under ``workdir`` against ``rucio``; stop it after the block.

    ``pools``: PanDA queue -> standing pool target, or None for a worker per activated job
    (default: ``BNL_EPIC_PROMPT`` with a worker per job). ``fault_markers``: the pilots run
    the reco payload through ``loopback.panda.fault_injection`` with that directory.
    ``fastpath_config``: the installation's configuration file the fast path's worker jobs
    (transformation ``epic-fastpath``) run with."""
    ddm = RucioDDM(RucioConfig(host=rucio.url, username=rucio.username,
                               password=rucio.password), list(rucio.rses))
    add_scope(ddm.client, "epic")
    pools = pools if pools is not None else {"BNL_EPIC_PROMPT": None}
    with ExitStack() as stack:
        panda = LocalPandaServer(workdir / "panda", rucio_config=rucio.config_file, chain=True,
                                 jedi_loop_s=jedi_loop_s,
                                 heartbeat_timeout_s=heartbeat_timeout_s).start()
        stack.callback(panda.stop)
        harvester = LocalHarvester(panda, workdir / "harvester", pools,
                                   max_workers=max_workers, cycle_s=harvester_cycle_s,
                                   rse_roots=rucio.rse_roots(), fault_markers=fault_markers,
                                   fastpath_config=fastpath_config)
        stack.callback(harvester.stop)
        harvester.start()
        yield PandaStack(rucio, panda, harvester)
