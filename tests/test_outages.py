"""Nothing lost through outages (issue 19): the drills of ``tests/drills.py`` once each, on
the services arrangement over a private PostgreSQL that they stop and restart. The soak
script ``bench/outage_soak.py`` repeats them and prints counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopback import drills
from loopback.postgres import LocalPostgres


@pytest.fixture(scope="module")
def postgres():
    with LocalPostgres.temporary() as server:
        yield server


@pytest.fixture
def drill(tmp_path: Path, postgres: LocalPostgres):
    with drills.drill_rig(tmp_path, postgres) as rig:
        yield rig


@pytest.fixture
def backlog_drill(tmp_path: Path, postgres: LocalPostgres):
    """A run fast enough to leave a restarted ingest a backlog of a few batches."""
    with drills.drill_rig(tmp_path, postgres, stfs=200, rate=50.0) as rig:
        yield rig


def test_postgres_stopped_10s_mid_run_with_agents_running(drill):
    verdict = drills.postgres_restart_mid_run(drill, down_s=10.0)
    assert drills.ok(verdict), (verdict, drill.diagnose())
    for role in ("ingest", "archive", "process", "merge"):  # nobody died of it
        assert drill.agents.processes[role].poll() is None, role


def test_kill_9_an_agent_while_the_database_is_down(drill):
    verdict = drills.kill_agent_while_database_down(drill, role="merge")
    assert drills.ok(verdict), (verdict, drill.diagnose())


def test_ingest_down_across_end_run(backlog_drill):
    verdict = drills.ingest_down_across_end_run(backlog_drill)
    assert drills.ok(verdict), (verdict, backlog_drill.diagnose())


def test_late_restart_of_every_agent_after_end_run(backlog_drill):
    verdict = drills.late_restart_of_every_agent(backlog_drill)
    assert drills.ok(verdict), (verdict, backlog_drill.diagnose())


def test_two_process_agents_one_killed(tmp_path: Path, postgres: LocalPostgres):
    """Scale-out: process=2, merge=2; one process agent killed -9 mid-run for good."""
    with drills.drill_rig(tmp_path, postgres, stfs=40, rate=20.0,
                          scale={"process": 2, "merge": 2}) as drill:
        verdict = drills.kill_one_of_two_process_agents(drill)
        assert drills.ok(verdict), (verdict, drill.diagnose())
        # (an STF whose job ended just before the kill may be processed again: at least once)
        assert verdict["agents_that_processed"] == 2
