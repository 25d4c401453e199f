"""Agents as processes with Rucio as DDM: kill -9 the ingest agent mid-run; every STF ends in
the run dataset exactly once, archived twice, and the datasets closed."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import pytest

from epic_wfms.cli.services import AgentSet, write_config
from epic_wfms.config import load_config
from epic_wfms.ddm import DID
from epic_wfms.installation import build_ddm, open_database
from epic_wfms.model import naming
from epic_wfms.store.schema import RunRecord, StfRecord
from epic_wfms.streaming.report import run_report
from tests.conftest import private_postgres_schema, wait_for
from tests.test_services import count

RUN, STFS = 301, 10


@pytest.fixture
def rucio_services(tmp_path: Path, rucio_server):
    settings = rucio_server.settings(rucio_server.new_scope(), transfers="local_copy")
    with private_postgres_schema() as url:
        config = load_config(
            data_dir=tmp_path / "wfms", database_url=url,
            bus={"transport": "stomp", "namespace": f"test-{uuid.uuid4().hex[:8]}",
                 "queue_expiry_s": 60},
            processing={"merge_every": 4, "missing_grace_s": 30.0},
            ddm={"backend": "rucio", "rucio": settings.model_dump()},
        )
        db = open_database(config)
        agents = AgentSet(config, write_config(config, tmp_path / "services.yaml"), db)
        agents.start_all()
        yield agents
        agents.stop_all()
        db.dispose()


def test_kill_9_ingest_mid_run_leaves_no_duplicate_or_missing_attachment(rucio_services):
    agents = rucio_services
    agents.start("daq", "--run", str(RUN), "--stfs", str(STFS), "--rate", "4",
                 "--stf-size", "16384")
    assert wait_for(lambda: count(agents, StfRecord.registered_at) >= 3, 90)
    agents.kill("ingest", signal.SIGKILL)
    time.sleep(0.5)
    agents.restart("ingest")

    def finished() -> bool:
        with agents.db.session() as session:
            run = session.get(RunRecord, RUN)
            return run is not None and run.status == "finished"

    assert wait_for(finished, 240)
    produced = [naming.stf_filename(RUN, s) for s in range(STFS)]
    ddm = build_ddm(agents.config, agents.db)
    report = run_report(agents.db, ddm, RUN, produced)
    assert report["lost"] == 0 and report["stfs_archived"] == STFS, report
    files = ddm.list_files(DID("epic", naming.run_dataset(RUN)))
    assert [f.name for f in files] == produced  # each once: none missing, none twice
    sites = [ddm.list_files(DID("epic", naming.site_dataset(RUN, s))) for s in
             ("E1_BNL", "E1_JLAB")]
    assert sorted(f.name for site in sites for f in site) == produced
    view = ddm.dataset_view(DID("epic", naming.run_dataset(RUN)))
    assert all(v.states.get("BNL_TAPE") == v.states.get("JLAB_TAPE") == "A"
               for v in view.values())
    assert not ddm.is_open(DID("epic", naming.run_dataset(RUN)))
