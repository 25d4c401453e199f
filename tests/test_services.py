"""Agents as separate processes over the real STOMP broker and PostgreSQL (loopback):
kill -9 any agent mid-run, or restart the broker, and the run still completes with lost = 0."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from epic_wfms.cli.services import AgentSet, write_config
from epic_wfms.config import load_config
from epic_wfms.installation import build_ddm, open_database
from epic_wfms.model import naming
from epic_wfms.store.schema import (
    AgentRecord,
    BrokerageDecisionRecord,
    JobRecord,
    RunRecord,
    StfRecord,
)
from epic_wfms.streaming.report import merged_stfs, run_report
from tests.conftest import wait_for

RUN, STFS = 301, 40
TIMEOUT = 180


@pytest.fixture
def services(tmp_path: Path, postgres_url: str):
    config = load_config(
        data_dir=tmp_path / "wfms", database_url=postgres_url,
        bus={"transport": "stomp", "namespace": f"test-{uuid.uuid4().hex[:8]}",
             "queue_expiry_s": 60},
        # a killed ingest agent needs seconds to restart and drain its backlog: STFs still
        # queued behind it are late, not missing (production default: 30 s)
        processing={"merge_every": 5, "missing_grace_s": 20.0},
    )
    db = open_database(config)
    agents = AgentSet(config, write_config(config, tmp_path / "services.yaml"), db)
    agents.start_all()
    yield agents
    agents.stop_all()
    db.dispose()


def daq_args(rate: float = 20) -> list[str]:
    return ["--run", str(RUN), "--stfs", str(STFS), "--rate", str(rate), "--stf-size", "16384"]


def count(agents: AgentSet, column) -> int:
    with agents.db.session() as session:
        return session.scalar(select(func.count(column)).where(StfRecord.run_number == RUN))


def assert_complete(agents: AgentSet) -> None:
    def finished() -> bool:
        with agents.db.session() as session:
            run = session.get(RunRecord, RUN)
            return run is not None and run.status == "finished"

    assert wait_for(finished, TIMEOUT), _diagnose(agents)
    produced = [naming.stf_filename(RUN, s) for s in range(STFS)]
    ddm = build_ddm(agents.config, agents.db)
    report = run_report(agents.db, ddm, RUN, produced)
    assert report["lost"] == 0, report
    assert report["stfs_archived"] == STFS and report["stfs_merged"] == STFS
    merged = merged_stfs(ddm, agents.db, RUN)
    assert sorted(merged) == produced  # every STF exactly once (the merge refuses duplicates)


def _diagnose(agents: AgentSet) -> str:
    """What is unfinished, with the jobs of each unfinished STF, and the agents' log tails."""
    with agents.db.session() as session:
        unfinished = {
            s.filename: (s.processing_status, s.archive_status, [
                (j.attempt_nr, j.status, j.error) for j in session.scalars(
                    select(JobRecord).where(JobRecord.stf_filename == s.filename))])
            for s in session.scalars(select(StfRecord).where(
                StfRecord.run_number == RUN, StfRecord.processing_status != "merged"))
        }
        run = session.get(RunRecord, RUN)
        run_status = run.status if run else None
    tails = {p.name: p.read_text()[-800:] for p in agents.logs.glob("*.log")}
    return json.dumps({"run": run_status, "unfinished": unfinished, "logs": tails},
                      default=str)[:8000]


@pytest.mark.parametrize("role", ["ingest", "archive", "process", "merge", "daq"])
def test_kill_9_an_agent_mid_run_and_restart_it(services: AgentSet, role: str):
    services.start("daq", *daq_args())
    assert wait_for(lambda: count(services, StfRecord.processed_at) >= 8, 60), _diagnose(services)
    services.kill(role, signal.SIGKILL)
    time.sleep(0.5)
    if role == "daq":
        services.restart("daq", *daq_args())
    else:
        services.restart(role)
    assert_complete(services)

    def reported() -> list[str]:
        with services.db.session() as session:
            return list(session.scalars(select(AgentRecord.status).where(
                AgentRecord.pid == services.processes[role].pid)))

    # the restarted incarnation reports in (the DAQ's may already have played its run out)
    expected = (["running"], ["stopped"]) if role == "daq" else (["running"],)
    assert wait_for(lambda: reported() in expected, 60), reported()


def test_broker_restart_mid_run(services: AgentSet):
    services.start("daq", *daq_args(rate=10))
    assert wait_for(lambda: count(services, StfRecord.processed_at) >= 5, 60), _diagnose(services)
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True)
    try:
        time.sleep(2)
    finally:
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True)
    assert_complete(services)
    assert "disconnected from the broker" in (services.logs / "ingest.log").read_text()


def test_site_taken_offline_from_the_cli_reaches_the_agents(services: AgentSet):
    """``epic-wfms sites offline`` in its own process, mid-run: the ingest agent routes the
    rest of the run to JLab, and the run completes."""
    services.start("daq", *daq_args(rate=3))  # slow enough that most STFs come after the
    # command, however loaded the machine (routing happens as ingest registers an STF)
    assert wait_for(lambda: count(services, StfRecord.registered_at) >= 4, 60), \
        _diagnose(services)
    offline = subprocess.run(
        [sys.executable, "-m", "epic_wfms.cli.main", "sites", "offline", "E1_BNL", "--reason",
         "disk array swap", "--config", str(services.config_path)],
        capture_output=True, text=True, check=True)
    assert "E1_BNL offline" in offline.stdout
    assert_complete(services)
    with services.db.session() as session:
        made = session.execute(select(BrokerageDecisionRecord.site, BrokerageDecisionRecord
                                      .reasons).order_by(BrokerageDecisionRecord.id)).all()
    seen = [i for i, (_, reasons) in enumerate(made) if reasons["degraded"]]
    assert seen and made[0][0] == "E1_BNL", made[:3]  # BNL had STFs before
    for site, reasons in made[seen[0]:]:  # from the first look after the command: JLab only
        assert (site, reasons["degraded"]) == ("E1_JLAB", {"E1_BNL": "offline: disk array swap"})
