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

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from epic_wfms.cli.services import write_config
from epic_wfms.config import Config
from epic_wfms.security.files import private_file
from epic_wfms.store.database import Database
from epic_wfms.wfms.panda.report import run_on_panda
from loopback.idds import LocalIddsServer
from loopback.panda.pilot import FASTPATH_TRANSFORMATION, TRANSFORMATION
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
    per-attempt faults of the reco payload, see ``loopback.panda.fault_injection``).

    With the fast path on, iDDS runs too (its prompt service and daemons, on this PanDA)
    and the fast path's standing pool is provisioned through it: pilot jobs at the
    ``fastpath.pool.idds.site`` queue running ePIC's worker (``epic-fastpath``), which take
    slices over the broker (the bus is switched to STOMP with a namespace of its own)."""
    with private_rucio(config, announce) as (config, rucio):
        queues = {s.name: config.wfms.panda.queues[s.name] for s in config.sites}
        announce(f"starting the PanDA stack (JEDI, daemons, Harvester) for {sorted(queues)}")
        workdir = (config.data_dir / "panda-stack").resolve()
        fastpath = config.fastpath.enabled
        worker_config = workdir / "fastpath-installation.yaml" if fastpath else None
        with panda_stack(workdir, rucio, pools=dict.fromkeys(queues.values()),
                         fault_markers=fault_markers, fastpath_config=worker_config,
                         ) as stack, ExitStack() as idds:
            who = stack.identity()
            token = private_file(workdir / "token")
            token.write_text(who.token)
            panda = config.wfms.panda.model_copy(update={
                "url": stack.panda_url, "auth_vo": who.auth_vo, "token_file": token,
                "queues": queues, "transformation": TRANSFORMATION,
                "container_image": None,  # the pilots run in this machine's environment
                "poll_interval_s": 1.0})
            announce(f"PanDA {stack.panda_url} ready: queues {queues}")
            config = config.model_copy(update={"wfms": config.wfms.model_copy(update={
                "backend": "panda", "panda": panda})})
            if fastpath:
                server = idds.enter_context(_idds_for(stack, workdir / "idds"))
                announce(f"iDDS {server.url} ready: the fast path's pool through its prompt "
                         f"service ({server.prompt_topic})")
                config = _fastpath_through(config, server)
                write_config(config, worker_config)
            yield config, stack


@contextmanager
def _idds_for(stack: PandaStack, workdir: Path) -> Iterator[LocalIddsServer]:
    """idds-server with its prompt service (Transceiver) and daemons on this PanDA."""
    tag = uuid.uuid4().hex[:8]
    server = LocalIddsServer(workdir, update_poll_s=3,
                             prompt_topic=f"/topic/panda.workflow.{tag}",
                             reply_topic=f"/topic/panda.workers.{tag}").start()
    try:
        who = stack.identity("iDDS Service")
        server.start_daemons(["clerk", "transformer", "submitter", "poller", "finisher",
                              "transceiver"],
                             env={**server.panda_env(stack.panda_url, who.token, who.auth_vo),
                                  **server.rucio_env(stack.rucio.config_file)})
        yield server
    finally:
        server.stop()


def _fastpath_through(config: Config, server: LocalIddsServer) -> Config:
    """``config`` with the fast path's pool provisioned through that iDDS: the bus on the
    STOMP broker (pilot jobs take the slices there), workers at E1_JLAB's queue."""
    bus = config.bus.model_copy(update={
        "transport": "stomp", "namespace": config.bus.namespace or f"epic-{uuid.uuid4().hex[:8]}",
        "queue_expiry_s": config.bus.queue_expiry_s or 600.0})
    pool = config.fastpath.pool
    pool = pool.model_copy(update={
        "provider": "idds", "provision_timeout_s": max(pool.provision_timeout_s, 300.0),
        "idds": pool.idds.model_copy(update={
            "site": "E1_JLAB", "transformation": FASTPATH_TRANSFORMATION,
            "prompt_topic": server.prompt_topic, "reply_topic": server.reply_topic,
            # iDDS's STOMP clients name the broker's host as virtual host (.ci/services-up)
            "broker_vhost": server.stomp_broker.split(":")[0]})})
    return config.model_copy(update={
        "bus": bus, "fastpath": config.fastpath.model_copy(update={"pool": pool})})


def panda_report(stack: PandaStack, db: Database, run_number: int) -> dict:
    """The run on PanDA as the store holds it, with Harvester's pilots and what the
    supervisor had to restart."""
    return {**run_on_panda(db, run_number), "server": stack.panda_url,
            "pilots": len(stack.harvester.workers()),
            "restarts": {name: len(r) for name, r in stack.restarts().items()}}
