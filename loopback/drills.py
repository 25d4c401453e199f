"""Outage drills on the services arrangement (agents as processes, real STOMP broker) over a
private PostgreSQL (``loopback/postgres.py``) that a drill may stop and restart without
disturbing anything else. Used by ``tests/test_outages.py`` (each drill once) and by
``bench/outage_soak.py`` (each drill in a loop, with counts). A drill that cannot even get
going (the run does not start, the DAQ does not end) raises ``DrillError``.

Every drill ends with the same verdict: the run finished, every STF the DAQ produced is in
the run's merged file exactly once, and no integrity issue of the run is left open."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy import func, select

from epic_wfms.cli.services import AgentSet, write_config
from epic_wfms.config import load_config
from epic_wfms.installation import build_ddm, open_database
from epic_wfms.model import naming
from epic_wfms.store.outage import database_down
from epic_wfms.store.schema import IntegrityIssueRecord, JobRecord, RunRecord, StfRecord
from epic_wfms.streaming.report import merged_stfs, run_report
from loopback.postgres import LocalPostgres

RUN, STFS, RATE = 401, 40, 10.0
MISSING_GRACE_S = 2.0  # small, so a drill that waits it out stays short
TIMEOUT = 180
ROLES = ("ingest", "archive", "process", "merge")


@dataclass
class Drill:
    agents: AgentSet
    postgres: LocalPostgres
    stfs: int = STFS
    rate: float = RATE

    def daq(self) -> None:
        self.agents.start("daq", "--run", str(RUN), "--stfs", str(self.stfs), "--rate",
                          str(self.rate), "--stf-size", "16384")

    def query(self, read: Callable, default=None):
        """A read of the store that tolerates the drill's own outage (None while down)."""
        try:
            with self.agents.db.session() as session:
                return read(session)
        except Exception as error:
            if database_down(error):
                return default
            raise

    def count(self, column) -> int:
        return self.query(lambda s: s.scalar(select(func.count(column)).where(
            StfRecord.run_number == RUN)), 0)

    def run_status(self) -> str | None:
        return self.query(lambda s: getattr(s.get(RunRecord, RUN), "status", None))

    def wait(self, predicate: Callable[[], bool], timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.1)
        return False

    def verdict(self) -> dict:
        """Wait for the run to end; what the drill asserts about it."""
        self.wait(lambda: self.run_status() in ("finished", "incomplete"), TIMEOUT)
        produced = [naming.stf_filename(RUN, s) for s in range(self.stfs)]
        ddm = build_ddm(self.agents.config, self.agents.db)
        report = run_report(self.agents.db, ddm, RUN, produced)
        merged = merged_stfs(ddm, self.agents.db, RUN)
        with self.agents.db.session() as session:
            issues = [f"{i.kind}: {i.detail}" for i in session.scalars(
                select(IntegrityIssueRecord).where(IntegrityIssueRecord.run_number == RUN,
                                                   IntegrityIssueRecord.resolved_at.is_(None)))]
        return {"status": self.run_status(), "lost": report["lost"],
                "merged_exactly_once": sorted(merged) == produced,
                "merged": len(merged), "open_issues": issues}

    def diagnose(self) -> str:
        def read(session):
            return {s.filename: (s.processing_status, s.archive_status, [
                (j.attempt_nr, j.status, j.error) for j in session.scalars(
                    select(JobRecord).where(JobRecord.stf_filename == s.filename))])
                for s in session.scalars(select(StfRecord).where(
                    StfRecord.run_number == RUN, StfRecord.processing_status != "merged"))}

        tails = {p.name: p.read_text()[-1500:] for p in self.agents.logs.glob("*.log")}
        return json.dumps({"run": self.run_status(), "unfinished": self.query(read),
                           "logs": tails}, default=str)[:12000]


class DrillError(AssertionError):
    """The drill could not be played as written (not a verdict on the run)."""


def check(condition: bool, why: str) -> None:
    if not condition:
        raise DrillError(why)


def ok(verdict: dict) -> bool:
    return (verdict["status"] == "finished" and verdict["lost"] == 0
            and verdict["merged_exactly_once"] and not verdict["open_issues"])


@contextmanager
def private_database(postgres: LocalPostgres) -> Iterator[str]:
    name = f"drill_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(host="127.0.0.1", port=postgres.port, user="postgres",
                         dbname="postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:{postgres.port}/{name}"


@contextmanager
def drill_rig(workdir: Path, postgres: LocalPostgres, stfs: int = STFS, rate: float = RATE,
              scale: dict[str, int] | None = None, **processing: object) -> Iterator[Drill]:
    with private_database(postgres) as url:
        config = load_config(
            data_dir=workdir / "wfms", database_url=url,
            bus={"transport": "stomp", "namespace": f"drill-{uuid.uuid4().hex[:8]}",
                 "queue_expiry_s": 300},
            processing={"merge_every": 5, "missing_grace_s": MISSING_GRACE_S, **processing},
        )
        db = open_database(config)
        agents = AgentSet(config, write_config(config, workdir / "services.yaml"), db)
        try:
            agents.start_all(scale=scale)
            yield Drill(agents, postgres, stfs, rate)
        finally:
            if not postgres.running():
                postgres.start()
            agents.stop_all()
            db.dispose()


# -- the drills (each returns the verdict) --------------------------------------------------
def postgres_restart_mid_run(drill: Drill, down_s: float = 10.0) -> dict:
    """PostgreSQL stopped for ``down_s`` mid-run, agents left running."""
    drill.daq()
    check(drill.wait(lambda: drill.count(StfRecord.processed_at) >= 8), drill.diagnose())
    drill.postgres.stop()
    time.sleep(down_s)  # the length of the outage is the drill's parameter
    drill.postgres.start()
    return drill.verdict()


def kill_agent_while_database_down(drill: Drill, role: str = "merge",
                                   down_s: float = 5.0) -> dict:
    """kill -9 of an agent during an outage, restarted at once (it waits for the database)."""
    drill.daq()
    check(drill.wait(lambda: drill.count(StfRecord.processed_at) >= 8), drill.diagnose())
    drill.postgres.stop()
    drill.agents.kill(role, signal.SIGKILL)
    drill.agents.start(role)
    time.sleep(down_s)  # the outage's length
    check(drill.agents.processes[role].poll() is None,
          "the agent started during the outage must wait for the database, not exit")
    drill.postgres.start()
    drill.agents.wait_ready((role,))
    return drill.verdict()


def ingest_down_across_end_run(drill: Drill, down_s: float = 3 * MISSING_GRACE_S) -> dict:
    """kill -9 of ingest at about half the run; restarted ``down_s`` after the DAQ's end_run
    (longer than the late-STF grace)."""
    drill.daq()
    check(drill.wait(lambda: drill.count(StfRecord.received_at) >= drill.stfs // 5),
          drill.diagnose())
    drill.agents.kill("ingest", signal.SIGKILL)
    daq = drill.agents.processes["daq"]
    check(drill.wait(lambda: daq.poll() is not None, 60), "the DAQ did not end its run")
    time.sleep(down_s)  # the outage's length, counted from the DAQ's end_run
    drill.agents.restart("ingest")
    return drill.verdict()


def late_restart_of_every_agent(drill: Drill) -> dict:
    """kill -9 of every streaming agent mid-run (as a database outage used to do), all
    restarted together well after the DAQ's end_run: the restarted merge must not gather
    the run before the restarted ingest has taken in its backlog."""
    drill.daq()
    check(drill.wait(lambda: drill.count(StfRecord.received_at) >= drill.stfs // 5),
          drill.diagnose())
    for role in ROLES:
        drill.agents.kill(role, signal.SIGKILL)
    daq = drill.agents.processes["daq"]
    check(drill.wait(lambda: daq.poll() is not None, 60), "the DAQ did not end its run")
    time.sleep(3 * MISSING_GRACE_S)  # the outage's length, counted from the DAQ's end_run
    for role in ("merge", "archive", "process", "ingest"):  # merge first: it must wait
        drill.agents.start(role)
    drill.agents.wait_ready(ROLES)
    return drill.verdict()


def kill_one_of_two_process_agents(drill: Drill) -> dict:
    """Two process and two merge agents (competing consumers); one process agent killed -9
    mid-run and not restarted: its peer adopts its jobs and STFs (streaming/ownership.py)."""
    drill.daq()
    check(drill.wait(lambda: drill.count(StfRecord.processed_at) >= drill.stfs // 4),
          drill.diagnose())
    drill.agents.kill("process.2", signal.SIGKILL)
    verdict = drill.verdict()
    verdict["agents_that_processed"] = drill.query(lambda s: s.scalar(
        select(func.count(func.distinct(JobRecord.agent))).where(
            JobRecord.run_number == RUN, JobRecord.kind == "reco",
            JobRecord.status == "finished")))
    verdict["processed_twice"] = drill.query(lambda s: s.scalar(select(func.count()).select_from(
        select(JobRecord.stf_filename).where(
            JobRecord.run_number == RUN, JobRecord.kind == "reco",
            JobRecord.status == "finished").group_by(JobRecord.stf_filename)
        .having(func.count() > 1).subquery())))
    return verdict


DRILLS = {
    "postgres_restart_mid_run": postgres_restart_mid_run,
    "kill_agent_while_database_down": kill_agent_while_database_down,
    "ingest_down_across_end_run": ingest_down_across_end_run,
    "late_restart_of_every_agent": late_restart_of_every_agent,
    "kill_one_of_two_process_agents": kill_one_of_two_process_agents,
}
SCALE = {"kill_one_of_two_process_agents": {"process": 2, "merge": 2}}  # agents per role
