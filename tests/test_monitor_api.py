"""REST API of the monitor on a store filled by a real embedded run: reads, errors, auth, and
every write path taking effect in the running streaming layer."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import jwt
import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance
from sqlalchemy import select

from epic_wfms.model import naming
from epic_wfms.monitor.app import create_app
from epic_wfms.store.schema import JobRecord, RestUsageRecord, StfRecord
from tests.conftest import wait_for
from tests.monitor_helpers import FAILING_SEQ, bearer, installation, monitor_config

RUN = 301
N_STFS = 8


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    config = monitor_config(tmp_path_factory.mktemp("monitor-api") / "wfms")
    inst = installation(config)
    inst.daq.bring_up()
    inst.daq.physics_run(RUN, N_STFS)
    assert inst.orchestrator.wait_run_finished(RUN, 60)
    yield inst
    inst.close()


@pytest.fixture(scope="module")
def client(inst):
    with TestClient(create_app(inst.config, inst.db, inst.bus)) as client:
        yield client


def stf_row(inst, filename):
    with inst.db.session() as session:
        return session.scalar(select(StfRecord).where(StfRecord.filename == filename))


def error_of(response, status, code):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["status"] == status
    assert error["what"] and error["fix"]
    return error


# -- reads ------------------------------------------------------------------------------------
def test_runs_and_run_detail_reflect_the_store(client):
    runs = client.get("/api/v1/runs").json()
    assert [r["number"] for r in runs["items"]] == [RUN]
    assert runs["items"][0]["stfs"] == N_STFS
    detail = client.get(f"/api/v1/runs/{RUN}").json()
    counts = detail["counts"]
    assert counts["produced"] == N_STFS and counts["failed"] == 1
    assert counts["processed"] == N_STFS - 1
    assert detail["run"]["status"] == "finished"
    assert detail["latency"]["end_to_end"]["n"] == N_STFS - 1
    assert {j["kind"] for j in detail["jobs"]} >= {"reco", "merge"}


def test_stf_timeline_in_pipeline_order(client):
    name = naming.stf_filename(RUN, 0)
    data = client.get(f"/api/v1/stfs/{name}").json()
    steps = [s["step"] for s in data["timeline"]]
    assert steps == ["produced", "registered", "archived", "dispatched", "processed", "merged"]
    times = [s["at"] for s in data["timeline"][:5]]
    assert all(times) and times[1] <= times[3] <= times[4]
    assert data["timeline"][5]["done"] and data["merge"] is not None
    assert data["jobs"][0]["status"] == "finished"
    children = {e["to"] for e in data["provenance"]["children"]}
    assert naming.reco_output_filename(name) in children


def test_stf_list_filters_pages_and_sorts(client):
    page = client.get("/api/v1/stfs", params={"run": RUN, "limit": 3, "offset": 2,
                                              "sort": "-sequence"}).json()
    assert page["total"] == N_STFS
    assert [s["sequence"] for s in page["items"]] == [5, 4, 3]
    failed = client.get("/api/v1/stfs", params={"processing_status": "failed"}).json()
    assert [s["sequence"] for s in failed["items"]] == [FAILING_SEQ]


def test_jobs_carry_a_diagnosis_and_provenance(client):
    failed = client.get("/api/v1/jobs", params={"status": "failed", "run": RUN}).json()
    assert failed["total"] == 2
    assert all(j["diagnosis"]["category"] == "injected failure" for j in failed["items"])
    finished = client.get("/api/v1/jobs", params={"status": "finished", "kind": "reco"}).json()
    job = client.get(f"/api/v1/jobs/{finished['items'][0]['id']}").json()
    assert job["inputs"] and job["outputs"] == [job["job"]["output"]]


def test_state_machine_current_and_history(client):
    state = client.get("/api/v1/state").json()
    assert (state["state"], state["substate"]) == ("beam", "ready")
    history = client.get("/api/v1/state/history", params={"run": RUN}).json()
    assert [t["trigger"] for t in history["items"]] == ["end_run", "start_run", "run_imminent"]


def test_summary_sites_merges_provenance_and_agents(client):
    summary = client.get("/api/v1/summary").json()
    assert summary["stfs_by_processing_status"].get("failed") == 1
    sites = client.get("/api/v1/sites").json()
    assert {s["name"] for s in sites} == {"E1_BNL", "E1_JLAB"}
    assert sum(s["jobs_recent"].get("failed", 0) for s in sites) == 2
    merges = client.get("/api/v1/merges", params={"run": RUN}).json()
    final = [m for m in merges["items"] if m["kind"] == "gather"]
    assert len(final) == 1 and final[0]["site"] is None  # the gather belongs to the run
    lineage = client.get(f"/api/v1/files/{final[0]['output']}/provenance").json()
    assert {e["level"] for e in lineage["parents"]} >= {1, 2, 3}
    assert client.get("/api/v1/agents").json() == []


def test_every_page_renders_and_gives_its_data_as_json(client):
    name = naming.stf_filename(RUN, 1)
    for path in ["/", "/state", "/runs", f"/runs/{RUN}", "/stfs", f"/stfs/{name}", "/jobs",
                 "/jobs/1", f"/files/{name}", "/sites", "/sites/E1_BNL", "/issues", "/users",
                 "/users/alice"]:
        html = client.get(path)
        assert html.status_code == 200 and "<main id=\"live\">" in html.text, path
        data = client.get(path, params={"json": ""})
        assert data.headers["content-type"].startswith("application/json"), path
        assert data.json(), path
    assert client.get(f"/runs/{RUN}", params={"json": ""}).json()["counts"]["produced"] == N_STFS


def test_errors_are_stable_objects(client):
    error_of(client.get("/api/v1/runs/999999"), 404, "not_found")
    assert client.get("/runs/999999").status_code == 404
    error_of(client.get("/api/v1/stfs", params={"sort": "size"}), 400, "bad_parameter")
    error_of(client.get("/api/v1/runs", params={"limit": 0}), 422, "validation_error")
    error_of(client.get("/api/v1/nothing"), 404, "not_found")


# -- authentication and roles -------------------------------------------------------------------
SUSPEND = ("/api/v1/streaming/suspend", {"reason": "test"})


def test_write_without_token_is_401(client):
    response = client.post(*SUSPEND[:1], json=SUSPEND[1])
    error_of(response, 401, "authentication_required")
    assert response.headers["www-authenticate"] == "Bearer"


def test_bad_signature_is_401(client, inst):
    good = bearer(inst.config, "mallory", "admin")["Authorization"].split()[1]
    claims = jwt.decode(good, options={"verify_signature": False})
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other_key, algorithm="RS256")
    response = client.post(SUSPEND[0], json=SUSPEND[1],
                           headers={"Authorization": f"Bearer {forged}"})
    assert "signature" in error_of(response, 401, "invalid_token")["what"]


def test_expired_token_is_401(client, inst):
    response = client.post(SUSPEND[0], json=SUSPEND[1],
                           headers=bearer(inst.config, "alice", "operator", ttl_s=-30))
    assert "expired" in error_of(response, 401, "invalid_token")["what"]


def test_wrong_audience_untrusted_issuer_and_garbage_are_401(client, inst):
    other = bearer(inst.config, "alice", "operator", audience="another-service")
    assert "audience" in error_of(client.post(SUSPEND[0], json=SUSPEND[1], headers=other),
                                  401, "invalid_token")["what"]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    foreign = jwt.encode({"iss": "https://evil.example", "aud": "epic-wfms", "sub": "x",
                          "exp": int(time.time()) + 60}, key, algorithm="RS256")
    error_of(client.post(SUSPEND[0], json=SUSPEND[1],
                         headers={"Authorization": f"Bearer {foreign}"}), 401, "invalid_token")
    error_of(client.get("/api/v1/runs", headers={"Authorization": "Bearer not-a-jwt"}),
             401, "invalid_token")
    error_of(client.get("/api/v1/runs", headers={"Authorization": "Basic abc"}),
             401, "bad_authorization_header")


def test_wrong_role_is_403_for_every_write(client, inst):
    viewer = bearer(inst.config, "victor", "viewer")
    for method, path, body in [("POST", "/api/v1/streaming/suspend", {"reason": "x"}),
                               ("POST", "/api/v1/streaming/resume", {"reason": "x"}),
                               ("POST", "/api/v1/jobs/1/kill", {"reason": "x"}),
                               ("POST", "/api/v1/jobs/1/retry", None),
                               ("PUT", "/api/v1/jobs/1/priority", {"priority": 5})]:
        response = client.request(method, path, json=body, headers=viewer)
        assert "victor" in error_of(response, 403, "forbidden")["what"], path
    operator = bearer(inst.config, "olga", "operator")
    error_of(client.put("/api/v1/jobs/1/priority", json={"priority": 5}, headers=operator),
             403, "forbidden")


def test_roles_granted_by_configuration(inst):
    config = inst.config.model_copy(update={"monitor": inst.config.monitor.model_copy(
        update={"user_roles": {"paula": ["production_manager"]}})})
    with TestClient(create_app(config, inst.db, inst.bus)) as client:
        me = client.get("/api/v1/users/me", headers=bearer(config, "paula", "user")).json()
        assert me["roles"] == ["production_manager", "user"]


def test_reads_can_require_authentication(inst):
    config = inst.config.model_copy(update={"monitor": inst.config.monitor.model_copy(
        update={"reads_require_auth": True})})
    with TestClient(create_app(config, inst.db, inst.bus)) as client:
        error_of(client.get("/api/v1/runs"), 401, "authentication_required")
        error_of(client.get("/", params={"json": ""}), 401, "authentication_required")
        assert client.get("/api/v1/runs", headers=bearer(config, "v", "viewer")).status_code == 200
        token = bearer(config, "v", "viewer")["Authorization"].split()[1]
        client.cookies.set("epic_wfms_token", token)  # a signed-in browser
        assert client.get("/runs").status_code == 200
        error_of(client.post("/api/v1/streaming/suspend", json={"reason": "csrf?"}),
                 401, "authentication_required")  # the cookie never authorizes a write


# -- writes take effect in the streaming layer ---------------------------------------------
def test_suspend_defers_new_stfs_and_resume_processes_them(client, inst):
    operator = bearer(inst.config, "olga", "operator")
    held = client.post("/api/v1/streaming/suspend", json={"reason": "tape drive swap"},
                       headers=operator)
    assert held.status_code == 200 and held.json()["username"] == "olga"
    assert client.get("/api/v1/streaming/hold").json()["suspended"]
    error_of(client.post("/api/v1/streaming/suspend", json={"reason": "again"},
                         headers=operator), 409, "already_suspended")
    run = RUN + 1
    inst.daq.run_imminent(run)
    inst.daq.start_run(run)
    names = [inst.daq.write_stf(run, s, datetime.now(UTC)).filename for s in range(3)]
    assert wait_for(lambda: all(stf_row(inst, n) and stf_row(inst, n).processing_status
                                == "deferred" for n in names), 30)
    resumed = client.post("/api/v1/streaming/resume", json={"reason": "drive back"},
                          headers=operator)
    assert resumed.status_code == 200 and resumed.json()["params"]["dispatched"] == 3
    assert wait_for(lambda: all(stf_row(inst, n).processing_status == "processed"
                                for n in names), 30)
    error_of(client.post("/api/v1/streaming/resume", json={"reason": "x"}, headers=operator),
             409, "not_suspended")
    inst.daq.end_run(run, 3)
    assert inst.orchestrator.wait_run_finished(run, 60)
    dashboard = client.get("/api/v1/dashboard").json()
    assert dashboard["hold"] is None
    assert [g["action"] for g in dashboard["gate_events"][:2]] == ["resumed", "suspended"]


def test_kill_and_priority_of_an_active_job(client, inst):
    executor = inst.executor
    for site in executor.sites():
        executor.set_online(site, False)  # jobs wait activated, as at a site with no slots
    run = RUN + 2
    inst.daq.run_imminent(run)
    inst.daq.start_run(run)
    name = inst.daq.write_stf(run, 0, datetime.now(UTC)).filename
    waiting = []
    assert wait_for(lambda: waiting.extend(client.get("/api/v1/jobs", params={
        "stf": name, "status": "activated"}).json()["items"]) or waiting, 30)
    job_id = waiting[0]["id"]
    manager = bearer(inst.config, "pm", "production_manager")
    priority = client.put(f"/api/v1/jobs/{job_id}/priority", json={"priority": 900},
                          headers=manager)
    assert priority.status_code == 200
    assert client.get(f"/api/v1/jobs/{job_id}").json()["priority"] == 900
    error_of(client.put(f"/api/v1/jobs/{job_id}/priority", json={"priority": 10**6},
                        headers=manager), 422, "validation_error")
    killed = client.post(f"/api/v1/jobs/{job_id}/kill", json={"reason": "wrong calibration"},
                         headers=bearer(inst.config, "olga", "operator"))
    assert killed.status_code == 200
    for site in executor.sites():
        executor.set_online(site, True)
    assert wait_for(lambda: stf_row(inst, name).processing_status == "processed", 30)
    with inst.db.session() as session:
        job = session.get(JobRecord, job_id)
        assert (job.status, job.error) == ("cancelled", "killed by olga: wrong calibration")
        assert job.started_at is None  # never ran
    error_of(client.post(f"/api/v1/jobs/{job_id}/kill", json={"reason": "again"},
                         headers=manager), 409, "job_not_active")
    error_of(client.put(f"/api/v1/jobs/{job_id}/priority", json={"priority": 1},
                        headers=manager), 409, "job_not_active")
    error_of(client.post("/api/v1/jobs/99999/kill", json={"reason": "x"}, headers=manager),
             404, "not_found")
    inst.daq.end_run(run, 1)
    assert inst.orchestrator.wait_run_finished(run, 60)


def test_retry_of_a_failed_job_processes_its_stf(client, inst):
    name = naming.stf_filename(RUN, FAILING_SEQ)
    operator = bearer(inst.config, "olga", "operator")
    failed = client.get("/api/v1/jobs", params={"stf": name}).json()["items"]
    assert {j["status"] for j in failed} == {"failed"}
    finished = client.get("/api/v1/jobs", params={"status": "finished", "kind": "reco"}).json()
    error_of(client.post(f"/api/v1/jobs/{finished['items'][0]['id']}/retry", headers=operator),
             409, "job_not_failed")
    merge = client.get("/api/v1/jobs", params={"kind": "merge"}).json()["items"][0]
    error_of(client.post(f"/api/v1/jobs/{merge['id']}/retry", headers=operator),
             409, "not_retryable")
    inst.config.fault_injection.reco_failures.clear()  # the site problem was fixed
    retried = client.post(f"/api/v1/jobs/{failed[0]['id']}/retry", headers=operator)
    assert retried.status_code == 200, retried.text
    assert wait_for(lambda: stf_row(inst, name).processing_status == "processed", 30)
    error_of(client.post(f"/api/v1/jobs/{failed[0]['id']}/retry", headers=operator),
             409, "stf_not_failed")
    user = client.get("/api/v1/users/olga").json()
    assert {c["action"] for c in user["commands"]} >= {"suspend", "resume", "kill", "retry"}


def test_rest_usage_is_recorded_per_user_and_endpoint(client, inst):
    client.get("/api/v1/runs", headers=bearer(inst.config, "uma", "viewer"))
    client.get("/api/v1/runs/424242", headers=bearer(inst.config, "uma", "viewer"))
    client.app.state.monitor.usage.flush()
    with inst.db.session() as session:
        rows = {(r.endpoint, r.calls, r.errors) for r in session.scalars(
            select(RestUsageRecord).where(RestUsageRecord.username == "uma"))}
    assert rows == {("/api/v1/runs", 1, 0), ("/api/v1/runs/{number}", 1, 1)}
    usage = client.get("/api/v1/usage", params={"user": "uma"}).json()
    assert {u["endpoint"] for u in usage} == {"/api/v1/runs", "/api/v1/runs/{number}"}


# -- the OpenAPI document fuzzed (last: its admin writes change the installation) ---------------
@pytest.fixture(scope="module")
def api_schema(inst):
    """Fuzzing phase only, bounded examples per operation: CI time stays small."""
    app = create_app(inst.config, inst.db, inst.bus)
    config = SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}}})
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", app, config=config)


@pytest.fixture(scope="module")
def admin(inst):
    return bearer(inst.config, "fuzzer", "admin")


# the event stream never ends by design; test_monitor_live reads a bounded number of events;
# revoking would revoke the fuzzer's own token (test_security covers it)
schema = schemathesis.pytest.from_fixture("api_schema").exclude(
    path_regex="/events$|/tokens/revoke$")


@schema.parametrize()
@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_openapi_fuzzing_finds_no_server_error(case, admin):
    """Writes are fuzzed with an admin token, so they reach the store and the bus."""
    case.call_and_validate(headers=admin, checks=[
        not_a_server_error, status_code_conformance, content_type_conformance])
