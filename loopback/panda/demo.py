"""``epic-wfms demo --wfms panda`` without a configured PanDA server: the whole loopback stack
for the demo's duration, and the configuration that points the installation at it.

A private Rucio server (``loopback.rucio.demo``) and the running PanDA stack
(``loopback.stack``: the PanDA server, JEDI's master, the server's daemons with ePIC's
Adder, Harvester starting a Pilot 3 for each job activated at an E1 queue). The
installation itself is the product's, built from configuration alone: ``wfms.backend:
panda`` with this server's URL and a production token, ``ddm.backend: rucio``. Its ``process``
role submits each E1's prompt task when the run's first STF is at that E1, its ``merge``
role sends merges and the gather to the E1 queues as PanDA jobs; pilots do the work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from epic_wfms.config import Config
from epic_wfms.security.files import private_file
from epic_wfms.store.database import Database
from epic_wfms.wfms.panda.report import run_on_panda
from loopback.panda.pilot import TRANSFORMATION
from loopback.rucio.demo import private_rucio
from loopback.stack import PandaStack, panda_stack


@contextmanager
def panda_demo(config: Config, announce: Callable[[str], Any] = print,
               ) -> Iterator[tuple[Config, Callable[[Database, int], dict]]]:
    """``config`` switched to the loopback stack, and what to add to the run's report."""
    with stack_for(config, announce) as (config, stack):
        yield config, partial(panda_report, stack)


@contextmanager
def stack_for(config: Config, announce: Callable[[str], Any] = print,
              fault_markers: Path | None = None) -> Iterator[tuple[Config, PandaStack]]:
    """A private Rucio and the running PanDA stack for ``config``'s E1 queues (a Pilot 3 per
    job activated there), and ``config`` switched to them (``fault_markers``: tests'
    per-attempt faults of the reco payload, see ``loopback.panda.fault_injection``)."""
    with private_rucio(config, announce) as (config, rucio):
        queues = {s.name: config.wfms.panda.queues[s.name] for s in config.sites}
        announce(f"starting the PanDA stack (JEDI, daemons, Harvester) for {sorted(queues)}")
        workdir = (config.data_dir / "panda-stack").resolve()
        with panda_stack(workdir, rucio, pools=dict.fromkeys(queues.values()),
                         fault_markers=fault_markers) as stack:
            who = stack.identity()
            token = private_file(workdir / "token")
            token.write_text(who.token)
            panda = config.wfms.panda.model_copy(update={
                "url": stack.panda_url, "auth_vo": who.auth_vo, "token_file": token,
                "queues": queues, "transformation": TRANSFORMATION,
                "container_image": None,  # the pilots run in this machine's environment
                "poll_interval_s": 1.0})
            announce(f"PanDA {stack.panda_url} ready: queues {queues}")
            yield config.model_copy(update={"wfms": config.wfms.model_copy(update={
                "backend": "panda", "panda": panda})}), stack


def panda_report(stack: PandaStack, db: Database, run_number: int) -> dict:
    """The run on PanDA as the store holds it, with Harvester's pilots and what the
    supervisor had to restart."""
    return {**run_on_panda(db, run_number), "server": stack.panda_url,
            "pilots": len(stack.harvester.workers()),
            "restarts": {name: len(r) for name, r in stack.restarts().items()}}
