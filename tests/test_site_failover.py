"""Fail-over between the E1s on a live run (R5.1, R12.4), embedded backends: an E1 taken
offline gets no new STFs and its backlog moves to the other; an E1 whose jobs fail is avoided;
each gets its share back when it returns; every decision and its reason is in the store."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from epic_wfms.cli.main import cli
from epic_wfms.lifecycle.job import JobKind
from epic_wfms.model import naming
from epic_wfms.monitor.app import create_app
from epic_wfms.store.controls import set_site_online
from epic_wfms.store.schema import BrokerageDecisionRecord, JobRecord
from epic_wfms.streaming.processing import StfProcessing
from epic_wfms.streaming.report import run_report
from tests.conftest import make_config, wait_for
from tests.test_streaming import TIMEOUT, open_run, stfs


def decisions(inst, run):
    with inst.db.session() as session:
        rows = session.scalars(select(BrokerageDecisionRecord).where(
            BrokerageDecisionRecord.job_ref.like(f"swf.{run:06d}.%"))
            .order_by(BrokerageDecisionRecord.id)).all()
        return [(int(r.job_ref.split(".")[2]), r.site, r.queue, r.outcome, r.reasons)
                for r in rows]


def job_sites(inst, run, sequences):
    with inst.db.session() as session:
        return {s for s in session.scalars(select(JobRecord.site).where(
            JobRecord.stf_filename.in_([naming.stf_filename(run, q) for q in sequences])))}


def write(inst, run, sequences):
    now = datetime.now(UTC)
    for sequence in sequences:
        inst.daq.write_stf(run, sequence, now)


def processed(inst, run, sequences):
    return wait_for(lambda: all(stfs(inst, run).get(s) is not None
                                and stfs(inst, run)[s].processed_at for s in sequences))


def test_offline_e1_gets_no_stfs_its_backlog_moves_and_it_comes_back(installation):
    inst, run = installation, 301
    open_run(inst, run)
    write(inst, run, range(4))
    assert processed(inst, run, range(4))
    assert job_sites(inst, run, range(4)) == {"E1_BNL", "E1_JLAB"}

    inst.daq.pause_run(run)  # a backlog at both E1s: deferred in standby
    write(inst, run, range(4, 8))
    assert wait_for(lambda: {stfs(inst, run)[s].processing_status for s in range(4, 8)
                             if s in stfs(inst, run)} == {"deferred"}
                    and len(stfs(inst, run)) == 8)
    at_bnl = {s for s in range(4, 8) if stfs(inst, run)[s].site == "E1_BNL"}
    assert at_bnl

    set_site_online(inst.db, "E1_BNL", False, "disk array swap", "shifter")
    assert wait_for(lambda: {stfs(inst, run)[s].site for s in range(4, 8)} == {"E1_JLAB"})
    assert {stfs(inst, run)[s].processing_status for s in range(4, 8)} == {"deferred"}
    inst.daq.resume_run(run)  # the moved backlog is caught up at JLab
    write(inst, run, range(8, 12))  # new STFs: JLab only
    assert processed(inst, run, range(4, 12))
    assert job_sites(inst, run, range(4, 12)) == {"E1_JLAB"}

    set_site_online(inst.db, "E1_BNL", True, "swapped", "shifter")
    write(inst, run, range(12, 16))
    inst.daq.end_run(run, 16)
    assert inst.orchestrator.wait_run_ended(run, TIMEOUT) == "finished"
    assert {stfs(inst, run)[s].site for s in range(12, 16)} == {"E1_BNL", "E1_JLAB"}
    report = run_report(inst.db, inst.ddm, run, [naming.stf_filename(run, s)
                                                 for s in range(16)])
    assert report["lost"] == 0 and report["stfs_merged"] == 16

    made = decisions(inst, run)
    routes = {seq: (site, queue, outcome, reasons)
              for seq, site, queue, outcome, reasons in made if reasons["action"] == "route"}
    assert sorted(routes) == list(range(16))  # one routing decision per STF
    for seq in range(8, 12):
        site, queue, outcome, reasons = routes[seq]
        assert (site, queue, outcome) == ("E1_JLAB", "JLAB_EPIC_PROMPT", "assigned")
        assert reasons["degraded"] == {"E1_BNL": "offline: disk array swap"}
    assert routes[0][:2] == ("E1_BNL", "BNL_EPIC_PROMPT") and routes[12][3]["degraded"] == {}
    moved = [(seq, site, reasons) for seq, site, _queue, _outcome, reasons in made
             if reasons["action"] == "reroute"]
    assert {seq for seq, _, _ in moved} == at_bnl
    for _seq, site, reasons in moved:
        assert site == "E1_JLAB" and reasons["from"] == "E1_BNL"
        assert reasons["summary"].startswith("rerouted from E1_BNL (offline: disk array swap)")


def test_queued_backlog_goes_to_the_other_e1_and_runs_once(installation_factory):
    """STFs queued at BNL, their requests not yet taken (no processing agent yet): BNL goes
    offline, they get requests at JLab; BNL's stale requests are not claimed."""
    inst, run = installation_factory(roles=("ingest", "archive", "merge")), 303
    open_run(inst, run)
    write(inst, run, range(6))
    assert wait_for(lambda: [r.processing_status for r in stfs(inst, run).values()]
                    == ["queued"] * 6)
    assert {r.site for r in stfs(inst, run).values()} == {"E1_BNL", "E1_JLAB"}
    set_site_online(inst.db, "E1_BNL", False, "network outage", "shifter")
    assert wait_for(lambda: {r.site for r in stfs(inst, run).values()} == {"E1_JLAB"})
    StfProcessing(inst.ctx).subscribe()  # the processing agent starts: both queues
    inst.daq.end_run(run, 6)
    assert inst.orchestrator.wait_run_ended(run, TIMEOUT) == "finished"
    with inst.db.session() as session:
        jobs = session.execute(select(JobRecord.kind, JobRecord.stf_filename, JobRecord.site)
                               ).all()
    assert sorted(name for kind, name, _ in jobs if kind == JobKind.RECO) == [
        naming.stf_filename(run, s) for s in range(6)]  # each STF processed once
    assert {site for _, _, site in jobs} == {"E1_JLAB"}  # its merges and the gather too
    report = run_report(inst.db, inst.ddm, run, [naming.stf_filename(run, s)
                                                 for s in range(6)])
    assert report["lost"] == 0 and report["stfs_merged"] == 6
    with TestClient(create_app(inst.config, inst.db, inst.bus)) as monitor:
        sites = {s["name"]: s for s in monitor.get("/api/v1/sites").json()}
        assert sites["E1_BNL"]["offline"]["reason"] == "network outage"
        assert sites["E1_JLAB"]["offline"] is None
        page = monitor.get("/sites/E1_BNL").text
        assert 'id="offline"' in page and "network outage" in page
        assert "network outage" in monitor.get("/fabric/E1_BNL").text
        decisions_page = monitor.get("/brokerage", params={"json": ""}).json()
        assert any(d["summary"].startswith("E1_JLAB/JLAB_EPIC_PROMPT: rerouted from E1_BNL")
                   for d in decisions_page["decisions"]["items"])


def test_with_no_e1_usable_stfs_wait_and_go_when_one_is_back(installation):
    inst, run = installation, 304
    for site in ("E1_BNL", "E1_JLAB"):
        set_site_online(inst.db, site, False, "both down", "shifter")
    open_run(inst, run)
    write(inst, run, range(3))
    assert wait_for(lambda: [r.processing_status for r in stfs(inst, run).values()]
                    == ["deferred"] * 3)
    assert {outcome for _, _, _, outcome, _ in decisions(inst, run)} == {"deferred"}
    set_site_online(inst.db, "E1_JLAB", True, "JLab back", "shifter")
    assert processed(inst, run, range(3))
    assert job_sites(inst, run, range(3)) == {"E1_JLAB"}
    inst.daq.end_run(run, 3)
    assert inst.orchestrator.wait_run_ended(run, TIMEOUT) == "finished"


def test_failing_e1_is_avoided(installation_factory, tmp_path, database_url):
    """Its return (probing after the backoff) is in test_decision_box; here the backoff
    outlasts the run."""
    config = make_config(tmp_path, database_url)
    config.decision_box.health.min_failures = 2
    config.fault_injection.reco_failures.update({0: 2})  # BNL's first STF fails twice
    inst, run = installation_factory(config), 302
    open_run(inst, run)
    write(inst, run, range(2))
    assert processed(inst, run, range(2))  # STF 0 at BNL on its third attempt
    box = inst.orchestrator.decision_box  # the ingest role reads the jobs' ends every second
    assert wait_for(lambda: box.usable_sites(time.time()) == {"E1_JLAB"})
    write(inst, run, range(2, 6))
    inst.daq.end_run(run, 6)
    assert inst.orchestrator.wait_run_ended(run, TIMEOUT) == "finished"
    assert {stfs(inst, run)[s].site for s in range(2, 6)} == {"E1_JLAB"}
    for seq, site, _queue, _outcome, reasons in decisions(inst, run):
        if seq >= 2:
            assert site == "E1_JLAB"
            assert reasons["degraded"] == {"E1_BNL": "avoided: 2/2 jobs failed in 300 s"}
    report = run_report(inst.db, inst.ddm, run, [naming.stf_filename(run, s)
                                                 for s in range(6)])
    assert report["lost"] == 0 and report["stfs_merged"] == 6


def test_cli_takes_a_site_offline_for_every_process(tmp_path):
    runner, data = CliRunner(), ["--data-dir", str(tmp_path / "wfms")]
    listed = runner.invoke(cli, ["sites", "list", "--json", *data])
    assert {r["site"]: r["status"] for r in json.loads(listed.output)}["E1_BNL"] == "ok"
    assert not (tmp_path / "wfms").exists()  # listing does not create a store
    off = runner.invoke(cli, ["sites", "offline", "E1_BNL", "--reason", "disk swap", *data])
    assert off.exit_code == 0 and "E1_BNL offline: gets no new STFs" in off.output
    rows = {r["site"]: r for r in json.loads(
        runner.invoke(cli, ["sites", "list", "--json", *data]).output)}
    assert (rows["E1_BNL"]["status"], rows["E1_BNL"]["reason"]) == ("offline", "disk swap")
    assert rows["E1_JLAB"]["status"] == "ok"
    assert runner.invoke(cli, ["sites", "online", "E1_BNL", *data]).exit_code == 0
    rows = {r["site"]: r for r in json.loads(
        runner.invoke(cli, ["sites", "list", "--json", *data]).output)}
    assert rows["E1_BNL"]["status"] == "ok"
    missing = runner.invoke(cli, ["sites", "offline", "E9_MOON", "--reason", "x", *data])
    assert missing.exit_code != 0 and "unknown site 'E9_MOON'" in missing.output
    no_reason = runner.invoke(cli, ["sites", "offline", "E1_BNL", *data])
    assert no_reason.exit_code != 0 and "--reason" in no_reason.output


def test_a_redelivered_announcement_keeps_the_route_already_decided(installation):
    """Ingest died after routing an STF (the decision is recorded before the DDM attaches
    it) and before recording the STF: the redelivered announcement keeps that route, even
    though a new ingest's balancer would start afresh elsewhere."""
    from epic_wfms.streaming.decision_box import WORKFLOW

    inst, run = installation, 302
    open_run(inst, run)
    first = naming.stf_filename(run, 0)  # a fresh balancer sends a run's first STF to BNL
    with inst.db.session() as session:
        session.add(BrokerageDecisionRecord(
            job_ref=first, workflow=WORKFLOW, activity="streaming", lane="normal",
            outcome="assigned", site="E1_JLAB", queue="JLAB_EPIC_PROMPT",
            reasons={"action": "route", "summary": "decided by the ingest that died"}))
    write(inst, run, range(2))
    assert processed(inst, run, range(2))
    assert stfs(inst, run)[0].site == "E1_JLAB" and job_sites(inst, run, [0]) == {"E1_JLAB"}
    assert [(s, site) for s, site, *_ in decisions(inst, run)] == [(0, "E1_JLAB"), (1, "E1_BNL")]
    site_files = inst.ddm.list_files(naming_did(naming.site_dataset(run, "E1_BNL")))
    assert first not in {f.name for f in site_files}


def naming_did(name):
    from epic_wfms.ddm import DID
    return DID(naming.SCOPE, name)
