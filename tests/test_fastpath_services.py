"""The fast path as its own agent (``epic-wfms agent fastpath``) over the real STOMP broker and
PostgreSQL: kill -9 a worker's payload, then the agent itself, and no slice is lost or
counted twice."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from epic_wfms.cli.services import AgentSet, write_config
from epic_wfms.config import load_config
from epic_wfms.daq import DaqSettings
from epic_wfms.fastpath.histograms import read_histograms
from epic_wfms.installation import Installation, open_database
from epic_wfms.store.schema import FastPathWorkerRecord, TfSliceRecord, utcnow
from tests.conftest import private_postgres_schema, wait_for

RUN, STFS, SAMPLE_TFS = 501, 6, 10


@pytest.fixture
def fastpath_agent(tmp_path: Path):
    with private_postgres_schema() as url:
        config = load_config(
            data_dir=tmp_path / "wfms", database_url=url,
            bus={"transport": "stomp", "namespace": f"test-{uuid.uuid4().hex[:8]}",
                 "queue_expiry_s": 60},
            fastpath={"pool": {"min": 2, "target": 2, "max": 2}, "drain_grace_s": 0.5,
                      "payload": {"extra_cost_s": 0.3}},
        )
        db = open_database(config)
        agents = AgentSet(config, write_config(config, tmp_path / "services.yaml"), db)
        agents.start_all(("ingest", "fastpath"))  # ingest keeps the run records
        daq_side = Installation.build(config, roles=(), name="test-daq")
        daq = daq_side.daq(DaqSettings(stf_size_bytes=8 * 1024, tfs_per_stf=20, rate_hz=0,
                                       tf_sample_size=SAMPLE_TFS))
        yield agents, daq
        agents.stop_all()
        daq_side.close()
        db.dispose()


def slices(agents: AgentSet) -> list[TfSliceRecord]:
    with agents.db.session() as session:
        return list(session.scalars(select(TfSliceRecord)))


def workers(agents: AgentSet) -> dict[str, FastPathWorkerRecord]:
    with agents.db.session() as session:
        return {w.name: w for w in session.scalars(select(FastPathWorkerRecord))}


def live_workers(agents: AgentSet) -> int:
    return sum(w.status == "registered" for w in workers(agents).values())


def test_fastpath_agent_survives_kill_9_of_a_payload_and_of_itself(fastpath_agent):
    agents, daq = fastpath_agent
    daq.run_imminent(RUN)
    assert wait_for(lambda: live_workers(agents) == 2, 60)
    daq.start_run(RUN)
    for sequence in range(STFS):
        daq.write_stf(RUN, sequence, utcnow())
    assert wait_for(lambda: any(s.status == "processing" for s in slices(agents)), 60)
    victim = next(s for s in slices(agents) if s.status == "processing")
    os.kill(workers(agents)[victim.worker].pid, signal.SIGKILL)  # the worker's payload
    assert wait_for(lambda: workers(agents)[victim.worker].status == "dead", 30)
    assert wait_for(lambda: sum(s.status == "completed" for s in slices(agents)) >= 8, 60)
    agents.kill("fastpath", signal.SIGKILL)  # the whole agent, its workers with it
    agents.restart("fastpath")  # finds the open run in the store and provisions its pool
    assert wait_for(lambda: live_workers(agents) == 2, 60), workers(agents)
    daq.end_run(RUN, STFS)
    expected = STFS * 3
    assert wait_for(lambda: [s.status for s in slices(agents)].count("completed") == expected,
                    120), [(s.name, s.status, s.attempts) for s in slices(agents)]
    assert wait_for(lambda: live_workers(agents) == 0, 60), workers(agents)  # drained
    done = slices(agents)
    assert len(done) == expected and all(s.attempts >= 1 for s in done)
    retried = {s.name: s for s in done}[victim.name]
    assert retried.attempts >= 2 and retried.worker != victim.worker
    hists = read_histograms(agents.db, RUN)
    assert hists["event_hits"]["entries"] == STFS * SAMPLE_TFS  # every event exactly once
    assert sum(w.slices_done for w in workers(agents).values()) == expected
