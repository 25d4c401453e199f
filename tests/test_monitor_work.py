"""The monitor's workload and fabric views on a store filled by real runs: a streaming run with
its fast path, a template submission run on the embedded backend, brokerage decisions of the
real broker over the catalogue, and PanDA task records as the read-back writes them. Reads,
pages, ``?json``, BigMon links, resource usage from the real runs, and the writes on tasks and
submissions (roles, ownership, a kill that stops a local runner)."""

from __future__ import annotations

import os
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from epic_wfms.brokerage import Broker, Fabric, FabricState, JobRequest
from epic_wfms.fastpath.results import wait_fastpath_drained
from epic_wfms.monitor.app import create_app
from epic_wfms.sites import load_catalogue
from epic_wfms.store import accounting
from epic_wfms.store.schema import (
    PandaJobRecord,
    PandaTaskRecord,
    ResourceUsageHourRecord,
    ResourceUsageRecord,
    TemplateStepRunRecord,
    TemplateSubmissionRecord,
    utcnow,
)
from epic_wfms.templates.loader import TemplateLibrary
from epic_wfms.templates.render import example_values, render_template
from epic_wfms.templates.submit import render_for_submission, submit
from epic_wfms.templates.workflow_runner import LocalRunOptions, run_local
from tests.conftest import wait_for
from tests.monitor_helpers import bearer, installation, monitor_config

RUN = 401
BIGMON = "https://bigmon.example.org"
TASK = 4242  # a jediTaskID as PanDA numbers them


@pytest.fixture(scope="module", autouse=True)
def _payloads_on_this_host():
    """Template payloads say python3: this interpreter, on the host (no container engine)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        patch.setenv("EPIC_CONTAINER_RUNTIME", "host")
        yield


@pytest.fixture(scope="module")
def inst(tmp_path_factory, _payloads_on_this_host):
    tmp = tmp_path_factory.mktemp("monitor-work")
    config = monitor_config(tmp / "wfms", bigmon_url=BIGMON)
    inst = installation(config)
    inst.daq.bring_up()
    inst.daq.physics_run(RUN, 6)
    assert inst.orchestrator.wait_run_finished(RUN, 60)
    assert wait_fastpath_drained(inst.db, RUN, 60)
    with pytest.MonkeyPatch.context() as patch:  # the physicist who submits
        patch.setenv("EPIC_WFMS_USER", "paula")
        workflow = render_for_submission(inst.db, TemplateLibrary(), "first_pass_reco",
                                         {"run": RUN})
        report = submit(inst.db, workflow, "local",
                        local=LocalRunOptions(workdir=tmp / "run", toy_inputs=True))
    assert report["status"] == "finished", report["error"]
    inst.submission = report["submission_id"]
    inst.campaign = workflow.campaign.name
    _panda_readback(inst)
    broker = Broker(FabricState(Fabric.from_catalogue(load_catalogue())))
    requests = [JobRequest(f"paula.job{i}", "reconstruction", cores=8, input_rses=("BNL_DISK",),
                           input_gb=4, user="paula", workflow="first_pass_reco")
                for i in range(3)] + [JobRequest("paula.huge", "reconstruction", cores=4096,
                                                 user="paula", workflow="first_pass_reco")]
    accounting.record_decisions(inst.db, [(broker.decide(r), r) for r in requests], utcnow())
    yield inst
    inst.close()


def _panda_readback(inst) -> None:
    """A task and its jobs as readback.sync_task stores what PanDA answered."""
    now = utcnow()
    with inst.db.session() as session:
        session.add(PandaTaskRecord(
            jedi_task_id=TASK, server="https://panda.example.org/server/panda",
            task_name=f"epic.{inst.campaign}.reco", kind="production", run_number=RUN,
            site="E1_BNL", status="running", priority=500, params={"userName": "paula"},
            username="paula", campaign=inst.campaign, submission_id=inst.submission,
            submitted_at=now - timedelta(hours=1), updated_at=now))
        session.flush()
        for i, (status, attempt, error) in enumerate([
                ("finished", 1, None), ("finished", 2, None), ("running", 1, None),
                ("failed", 3, "pilotErrorDiag: payload exited 65")]):
            session.add(PandaJobRecord(
                panda_id=7_000_000 + i, jedi_task_id=TASK, status=status, site="BNL_PROD",
                attempt_nr=attempt, input_files=[f"swf.{RUN:06d}.{i:06d}.stf"],
                stf_filename=f"swf.{RUN:06d}.{i:06d}.stf", error=error, updated_at=now))


@pytest.fixture(scope="module")
def client(inst):
    with TestClient(create_app(inst.config, inst.db, inst.bus)) as client:
        yield client


def test_tasks_show_pandas_ids_jobs_attempts_errors_and_bigmon_links(client):
    tasks = client.get("/api/v1/tasks?user=paula").json()
    [task] = tasks["items"]
    assert task["jedi_task_id"] == TASK and task["status"] == "running"
    assert task["jobs"] == {"finished": 2, "running": 1, "failed": 1}
    assert task["max_attempt"] == 3 and task["errors"] == 1 and task["progress"] == 0.5
    assert task["links"]["bigmon"] == f"{BIGMON}/task/{TASK}/"
    detail = client.get(f"/api/v1/tasks/{TASK}").json()
    assert detail["errors"] == [{"error": "pilotErrorDiag: payload exited 65", "jobs": 1}]
    job = detail["jobs"]["items"][0]
    assert job["links"]["bigmon"] == f"{BIGMON}/job/{job['panda_id']}/"
    one = client.get(f"/api/v1/pandajobs/{job['panda_id']}").json()
    assert one["task"]["jedi_task_id"] == TASK
    assert client.get("/api/v1/pandajobs?status=failed").json()["total"] == 1
    assert client.get("/api/v1/tasks/1").status_code == 404


def test_submission_progress_by_step_failures_and_campaign_by_tag(client, inst):
    sub = client.get(f"/api/v1/submissions/{inst.submission}").json()
    assert sub["submission"]["username"] == "paula"
    assert sub["submission"]["priority"] is not None
    steps = {s["step"]: s for s in sub["steps"]}
    assert steps and all(s["progress"] == 1.0 for s in steps.values())
    assert [t["jedi_task_id"] for t in sub["tasks"]] == [TASK]
    assert set(sub["tags"]) == {"p", "r"}
    campaign = client.get(f"/api/v1/campaigns/{inst.campaign}").json()
    assert {t["tag"] for t in campaign["tags"]} == {"p2001", "r1002"}
    assert campaign["users"] == ["paula"] and campaign["tasks_total"] == 1
    listed = {c["campaign"]: c for c in client.get("/api/v1/campaigns").json()}
    assert listed[inst.campaign]["submissions"] == {"finished": 1}
    templates = {t["name"]: t for t in client.get("/api/v1/templates").json()}
    assert templates["first_pass_reco"]["submissions"] == {"finished": 1}


def test_real_runs_record_resource_usage_by_workflow_user_and_site(client, inst):
    with inst.db.session() as session:
        rows = session.scalars(select(ResourceUsageRecord)).all()
    streaming = [r for r in rows if r.user == "epic-streaming"]
    steps = [r for r in rows if r.user == "paula"]
    assert {r.site for r in streaming} == {"E1_BNL", "E1_JLAB"}
    assert {r.workflow for r in streaming} >= {"streaming_reco", "streaming_merge"}
    assert all(r.core_seconds >= 0 and r.ended_at >= r.started_at for r in rows)
    assert steps and {r.workflow for r in steps} == {"first_pass_reco"}
    with inst.db.session() as session:  # the hourly sums the pages read add up to the jobs
        hourly = session.scalars(select(ResourceUsageHourRecord)).all()
    assert sum(h.jobs for h in hourly) == len(rows)
    assert sum(h.core_seconds for h in hourly) == pytest.approx(sum(r.core_seconds for r in rows))
    by_user = {r["user"]: r for r in client.get("/api/v1/resources?by=user&hours=2").json()["rows"]}
    assert by_user["paula"]["jobs"] == len(steps)
    assert by_user["epic-streaming"]["jobs"] == len(streaming)
    by_site = client.get("/api/v1/resources?by=site&hours=2").json()
    assert by_site["series"] and by_site["totals"]["jobs"] == len(rows)
    assert client.get("/api/v1/resources?by=colour").status_code == 422


def test_fast_path_latency_pool_size_histograms_and_alarms(client):
    assert RUN in client.get("/api/v1/fastpath/runs").json()
    fp = client.get(f"/api/v1/fastpath/{RUN}").json()
    assert fp["slices"].get("completed", 0) == fp["total"] > 0
    assert fp["latency_s"]["n"] == len(fp["latency_series"]) > 0
    assert fp["latency_s"]["p50"] <= fp["latency_s"]["p99"]
    sizes = [p["workers"] for p in fp["pool_series"] if p["workers"] is not None]
    assert max(sizes) >= 1 and sizes[-1] == 0  # provisioned at run_imminent, drained at end
    assert {h["name"] for h in fp["histograms"]} >= {"event_hits", "event_adc_mean"}
    assert all(sum(h["counts"]) + h["underflow"] + h["overflow"] == h["entries"]
               for h in fp["histograms"])
    slices = client.get(f"/api/v1/fastpath/slices?run={RUN}&limit=5").json()
    assert slices["total"] == fp["total"] and len(slices["items"]) == min(5, fp["total"])


def test_brokerage_decisions_with_reasons_and_sites_with_health_and_shares(client):
    decisions = client.get("/api/v1/brokerage/decisions?user=paula").json()
    assert decisions["total"] == 4
    outcomes = {d["job_ref"]: d for d in decisions["items"]}
    assert outcomes["paula.huge"]["outcome"] == "no_candidate"
    assigned = outcomes["paula.job0"]
    assert assigned["outcome"] == "assigned" and assigned["site"] in assigned["summary"]
    assert assigned["reasons"]["components"]
    sites = {s["name"]: s for s in client.get("/api/v1/fabric/sites?hours=2").json()}
    assert len(sites) == len(load_catalogue().sites)
    # three brokered jobs and the run's six STFs (routed by the butterfly balancer)
    assert sum(s["assigned"] for s in sites.values()) == 3 + 6
    assert sites["E1_BNL"]["assigned"] >= 3 and sites["E1_JLAB"]["assigned"] >= 3
    bnl = sites["E1_BNL"]
    assert bnl["shares"]["streaming"] > 0 and bnl["health"]["state"] in ("ok", "degraded")
    assert bnl["used_share"]["streaming"] > 0  # the streaming run's jobs, recorded as used
    assert sites["E2_OLCF"]["health"]["state"] == "idle"


def test_a_users_page_has_their_tasks_submissions_and_usage(client, inst):
    me = client.get("/api/v1/users/paula").json()
    assert [t["jedi_task_id"] for t in me["tasks"]] == [TASK]
    assert [s["id"] for s in me["submissions"]] == [inst.submission]
    assert {r["workflow"] for r in me["resource_usage"]["rows"]} == {"first_pass_reco"}
    page = client.get("/users/paula")
    assert f'href="/tasks/{TASK}"' in page.text and f'/submissions/{inst.submission}' in page.text


def test_task_writes_need_the_role_or_ownership(client, inst):
    url = f"/api/v1/tasks/{TASK}/kill"
    assert client.post(url, json={"reason": "x"}).status_code == 401
    forbidden = client.post(url, json={"reason": "x"}, headers=bearer(inst.config, "vic",
                                                                       "viewer"))
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"
    # the owner and a production manager get through to PanDA, which is not configured here
    for who in (bearer(inst.config, "paula", "user"),
                bearer(inst.config, "olga", "production_manager")):
        refused = client.post(url, json={"reason": "x"}, headers=who)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "no_panda"
    priority = client.put(f"/api/v1/campaigns/{inst.campaign}/priority", json={"priority": 900},
                          headers=bearer(inst.config, "olga", "operator"))
    assert priority.status_code == 403  # priorities: production managers and admins


def test_an_operator_kill_stops_a_running_local_submission(client, inst, tmp_path):
    library = TemplateLibrary()
    spec, _ = library.load("simulation_campaign")
    workflow = render_template("simulation_campaign", {
        **example_values(spec), "events": 40, "events_per_job": 2, "q2_bins": "10"}, library)
    done: dict = {}
    runner = threading.Thread(target=lambda: done.update(run_local(
        inst.db, workflow, LocalRunOptions(workdir=tmp_path / "sim"))))
    runner.start()

    def first_job_ended():
        with inst.db.session() as session:
            return session.scalar(select(TemplateStepRunRecord.submission_id).where(
                TemplateStepRunRecord.ended_at.is_not(None),
                TemplateStepRunRecord.submission_id != inst.submission).limit(1))
    assert wait_for(first_job_ended, 60)
    submission = first_job_ended()
    killed = client.post(f"/api/v1/submissions/{submission}/kill", json={"reason": "wrong beam"},
                         headers=bearer(inst.config, "olga", "operator"))
    assert killed.status_code == 200, killed.text
    runner.join(120)
    assert done["status"] == "cancelled" and "killed by an operator" in done["error"]
    with inst.db.session() as session:
        record = session.get(TemplateSubmissionRecord, submission)
        ran = session.scalar(select(TemplateStepRunRecord.id).where(
            TemplateStepRunRecord.submission_id == submission).order_by(
            TemplateStepRunRecord.id.desc()).limit(1))
    assert record.status == "cancelled" and record.error.startswith("killed by olga")
    assert ran is not None
    again = client.post(f"/api/v1/submissions/{submission}/kill", json={"reason": "again"},
                        headers=bearer(inst.config, "olga", "operator"))
    assert again.json()["error"]["code"] == "submission_not_active"


PAGES = ["/tasks", f"/tasks/{TASK}", "/pandajobs", "/pandajobs/7000003", "/templates",
         "/templates/first_pass_reco", "/submissions", "/campaigns", f"/fastpath/{RUN}",
         "/brokerage", "/fabric/E1_BNL", "/resources?by=workflow", "/users/paula", "/"]


@pytest.mark.parametrize("path", PAGES)
def test_every_new_page_renders_and_gives_its_data_as_json(client, path):
    html = client.get(path)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "Internal Server Error" not in html.text and "<main" in html.text
    data = client.get(path + ("&json" if "?" in path else "?json"))
    assert data.status_code == 200 and data.headers["content-type"] == "application/json"
    assert data.json()


def test_plots_are_svg_drawn_from_the_pages_data(client, inst):
    fp = client.get(f"/fastpath/{RUN}").text
    assert 'data-plot="slice-latency"' in fp and 'data-plot="pool-size"' in fp
    assert fp.count('class="bin"') >= 40  # hits histogram bins
    dashboard = client.get("/").text
    assert 'data-plot="stf-latency"' in dashboard and 'data-plot="backlog"' in dashboard
    sub = client.get(f"/campaigns/{inst.campaign}").text
    assert 'data-plot="step-progress"' in sub
