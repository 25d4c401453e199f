"""The STF orchestrator, composed of roles that run together (embedded) or as agents.

  ingest    state tracking, run lifecycle, validation/registration, decision box and site
            fail-over, TF samples, testbed bridge, stream-activity watch
  archive   archive rules to tape at both E1s
  process   prompt processing at the E1 sites (needs an executor)
  merge     merge/gather and end-of-run finalization (needs an executor)

Every role is idempotent and recovers its own unfinished work at start, so any agent can be
killed and started again (R12.1).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from epic_wfms.errors import ConfigurationError
from epic_wfms.fastpath.role import FastPath
from epic_wfms.lifecycle.run import RUN_ENDED, RunStatus
from epic_wfms.store.outage import Backoff, database_down, retry_while_down
from epic_wfms.store.runs import get_run
from epic_wfms.streaming.activity import StreamActivity
from epic_wfms.streaming.archiving import Archiver
from epic_wfms.streaming.context import StreamingContext
from epic_wfms.streaming.decision_box import DecisionBox
from epic_wfms.streaming.failover import SiteFailover
from epic_wfms.streaming.ingest import Ingest
from epic_wfms.streaming.merging import Merging
from epic_wfms.streaming.ownership import LIVE_S
from epic_wfms.streaming.processing import StfProcessing
from epic_wfms.streaming.runs import RunLifecycle
from epic_wfms.streaming.state_tracking import DetectorFollower, StateTracker
from epic_wfms.streaming.testbed_bridge import TestbedBridge
from epic_wfms.streaming.tf_samples import TfSampleBook

log = logging.getLogger(__name__)

ROLES = ("ingest", "archive", "process", "merge")
OPTIONAL_ROLES = ("fastpath",)  # epic_wfms/fastpath; embedded: runs with the four when enabled
TICK_S = 0.25
ADOPT_S = 5.0  # how often process and merge look for the work of instances that died


def check_roles(roles: Iterable[str]) -> None:
    if unknown := set(roles) - set(ROLES) - set(OPTIONAL_ROLES):
        raise ConfigurationError(f"unknown roles {sorted(unknown)}",
                                 "an orchestrator runs streaming roles only",
                                 f"choose from {', '.join(ROLES + OPTIONAL_ROLES)}")


class Component(Protocol):
    def subscribe(self) -> None: ...


class Orchestrator:
    def __init__(self, ctx: StreamingContext, roles: Iterable[str] = ROLES) -> None:
        self.ctx = ctx
        self.roles = tuple(roles)
        check_roles(self.roles)
        if set(ROLES) <= set(self.roles) and ctx.config.fastpath.enabled:
            self.roles += tuple(r for r in OPTIONAL_ROLES if r not in self.roles)
        self.components: list[Component] = []
        self.tickers: list[Callable[[], None]] = []
        self.adopters: list[Callable[[], None]] = []  # recover the work of dead peers
        for role in self.roles:
            getattr(self, f"_build_{role}")()
        if "ingest" not in self.roles and "process" not in self.roles:
            self.components.append(DetectorFollower(ctx))  # others follow state_changed
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="orchestrator-tick", daemon=True)

    def _build_ingest(self) -> None:
        ctx = self.ctx
        self.decision_box = DecisionBox.build(ctx.config, ctx.db)
        self.failover = SiteFailover(ctx, self.decision_box)
        self.activity = StreamActivity(ctx)
        self.state = StateTracker(ctx)
        self.ingest = Ingest(ctx, self.decision_box, self.activity)
        self.testbed = TestbedBridge(ctx)
        self.components += [self.state, RunLifecycle(ctx), self.ingest, TfSampleBook(ctx),
                            self.testbed]
        self.tickers += [self.activity.check_idle, self.testbed.arrivals.tick,
                         self.failover.tick]

    def _build_archive(self) -> None:
        self.components.append(Archiver(self.ctx))

    def _build_process(self) -> None:
        """Where STFs are processed follows ``wfms.backend``: the executor's worker slots, or
        JEDI prompt tasks on PanDA (``wfms/panda/prompt.py``)."""
        if self.ctx.config.wfms.backend == "panda":
            from epic_wfms.wfms.panda.prompt import PandaPromptProcessing

            assert self.ctx.panda is not None, "the installation connects to PanDA"
            self.processing = PandaPromptProcessing(self.ctx, *self.ctx.panda)
        else:
            self.processing = StfProcessing(self.ctx)
        self.components.append(self.processing)
        if isinstance(self.processing, StfProcessing):
            self.adopters.append(self.processing.adopt)

    def _build_fastpath(self) -> None:
        self.fastpath = FastPath(self.ctx)
        self.components.append(self.fastpath)

    def _build_merge(self) -> None:
        self.merging = Merging(self.ctx)
        self.merging.ingest_in_process = "ingest" in self.roles
        self.adopters.append(self.merging.adopt)
        self.components.append(self.merging)
        self.tickers.append(self.merging.tick)

    def start(self) -> None:
        """Recover every component's unfinished work (waiting out a database outage), then
        subscribe them and start the periodic duties."""
        for component in self.components:
            recover = getattr(component, "recover", None)
            if recover is not None:
                retry_while_down(recover, f"recovering {type(component).__name__}", self._stop)
        for component in self.components:
            component.subscribe()
        self._ticker.start()

    def _tick(self) -> None:
        """Every duty each tick; while the database is unreachable, one line per outage and
        ticks spaced out with backoff (up to 5 s) until a tick passes again."""
        backoff = Backoff()
        delay = TICK_S
        next_adoption = time.monotonic() + ADOPT_S
        while not self._stop.wait(delay):
            down = False
            duties = list(self.tickers)
            if time.monotonic() >= next_adoption:
                duties += self.adopters
                next_adoption = time.monotonic() + ADOPT_S
            for tick in duties:
                try:
                    tick()
                except Exception as error:  # a failing duty must not stop the others
                    if not database_down(error):
                        log.exception("periodic duty %s failed", tick)
                        continue
                    down = True
                    if not backoff.failures:
                        log.warning("periodic duties: the database is unreachable (%s); "
                                    "retrying with backoff", str(error).splitlines()[0][:200])
            if down:
                delay = max(TICK_S, backoff.next())
                # peers could not beat either: judge their liveness only once they could
                next_adoption = time.monotonic() + ADOPT_S + 2 * LIVE_S
            else:
                if backoff.failures:
                    log.warning("periodic duties: the database is back")
                backoff.reset()
                delay = TICK_S

    def wait_run_finished(self, run_number: int, timeout: float) -> bool:
        """True once the run is ``finished``; False at once if it ended ``incomplete``."""
        return self.wait_run_ended(run_number, timeout) == RunStatus.FINISHED

    def wait_run_ended(self, run_number: int, timeout: float) -> str | None:
        """The run's final status (``finished`` or ``incomplete``), or None at the timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = get_run(self.ctx.db, run_number)
            if run is not None and run.status in RUN_ENDED:
                return run.status
            time.sleep(0.1)
        return None

    def stop(self) -> None:
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join(timeout=5)
        if "process" in self.roles:
            self.processing.stop()
        if "fastpath" in self.roles:
            self.fastpath.stop()
