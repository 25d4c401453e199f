"""Prometheus metrics, OpenSearch bulk export and webhook notifications, against a store
filled by a real run and a real local HTTP receiver."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from epic_wfms.cli.main import cli
from epic_wfms.config import NotificationRule
from epic_wfms.monitor.app import create_app
from epic_wfms.monitor.auth import Authenticator
from epic_wfms.monitor.notifications import Notifier
from epic_wfms.monitor.readstore import ReadStore
from tests.conftest import private_postgres_schema, wait_for
from tests.monitor_helpers import installation, monitor_config

RUN = 401
N_STFS = 6


class Receiver:
    """A real webhook endpoint on a free loopback port, keeping what it was sent."""

    def __init__(self, status: int = 200) -> None:
        self.received: list[dict] = []
        received, code = self.received, status

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    inst = installation(monitor_config(tmp_path_factory.mktemp("monitor-exports") / "wfms"))
    yield inst
    inst.close()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def test_state_change_and_threshold_rules_are_delivered(inst, receiver):
    rules = [
        NotificationRule(name="run-state", kind="state_change", webhook=receiver.url,
                         states=["run"]),
        NotificationRule(name="failures", kind="failure_rate", webhook=receiver.url,
                         threshold=0.05, window_s=600),
        NotificationRule(name="slow", kind="latency_slo", webhook=receiver.url,
                         threshold=0.0),
        NotificationRule(name="backlog", kind="backlog", webhook=receiver.url, threshold=1000),
    ]
    notifier = Notifier(ReadStore(inst.config.db_url), rules)
    assert notifier.run_once() == []  # nothing happened yet: nothing to say
    inst.daq.bring_up()
    inst.daq.physics_run(RUN, N_STFS)  # STF 5 fails both attempts: 2 of ~7 reco jobs fail
    assert inst.orchestrator.wait_run_finished(RUN, 60)
    deliveries = notifier.run_once()
    assert all(d.status_code == 200 for d in deliveries)
    by_rule: dict[str, list[dict]] = {}
    for payload in receiver.received:
        by_rule.setdefault(payload["rule"], []).append(payload)
    assert [p["transition"]["trigger"] for p in by_rule["run-state"]] == ["start_run"]
    assert by_rule["failures"][0]["status"] == "firing"
    assert by_rule["failures"][0]["value"] > 0.05
    assert by_rule["slow"][0]["status"] == "firing"
    assert "backlog" not in by_rule  # 0 STFs waiting is under the threshold
    assert notifier.run_once() == []  # firing once, not at every evaluation
    notifier.rules[1] = notifier.rules[1].model_copy(update={"threshold": 0.99})
    resolved = notifier.run_once()
    assert [(d.rule, d.payload["status"]) for d in resolved] == [("failures", "resolved")]


def test_undeliverable_webhook_is_reported_not_raised(inst):
    dead = Receiver(status=503)
    rule = NotificationRule(name="state", kind="state_change", webhook=dead.url, states=["run"])
    notifier = Notifier(ReadStore(inst.config.db_url), [rule])
    notifier._last_transition = 0
    deliveries = notifier.run_once()
    dead.close()
    assert len(deliveries) == 1
    assert deliveries[0].status_code == 503 and deliveries[0].error.startswith("HTTP 503")
    assert len(dead.received) == 3 * len(deliveries)  # retried


def test_notifier_runs_inside_the_app(inst, receiver):
    rule = NotificationRule(name="any", kind="state_change", webhook=receiver.url)
    monitor = inst.config.monitor.model_copy(update={"notifications": [rule],
                                                     "notify_poll_s": 0.2})
    config = inst.config.model_copy(update={"monitor": monitor})
    with TestClient(create_app(config, inst.db, inst.bus)):
        inst.daq.event("beam_lost", "no_beam", "not_ready", "test")
        assert wait_for(lambda: any(p["transition"]["trigger"] == "beam_lost"
                                    for p in receiver.received), 20)


def test_prometheus_metrics_reflect_the_store(inst):
    with TestClient(create_app(inst.config, inst.db, inst.bus)) as client:
        text = client.get("/metrics").text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("epic_wfms_run_stfs", (("run", str(RUN)), ("stage", "produced")))] == N_STFS
    assert samples[("epic_wfms_run_stfs", (("run", str(RUN)), ("stage", "failed")))] == 1
    assert samples[("epic_wfms_processing_suspended", ())] == 0
    failed = sum(v for (name, labels), v in samples.items()
                 if name == "epic_wfms_jobs_ended_24h" and ("status", "failed") in labels)
    assert failed == 2
    assert any(name == "epic_wfms_stage_latency_seconds" for name, _ in samples)


def test_opensearch_bulk_export_is_valid_ndjson(inst):
    with TestClient(create_app(inst.config, inst.db, inst.bus)) as client:
        body = client.get("/api/v1/export/opensearch", params={"kind": "stfs", "run": RUN}).text
        limited = client.get("/api/v1/export/opensearch",
                             params={"kind": "jobs", "limit": 3}).text
    lines = [json.loads(line) for line in body.splitlines()]
    actions, docs = lines[0::2], lines[1::2]
    assert len(docs) == N_STFS
    assert all(a["index"]["_index"] == "epic-wfms-stfs" for a in actions)
    assert [a["index"]["_id"] for a in actions] == [str(d["id"]) for d in docs]
    assert {d["run_number"] for d in docs} == {RUN}
    assert len(limited.splitlines()) == 6
    assert body.endswith("\n")  # the _bulk API needs the final newline


def test_event_stream_announces_store_changes(inst):
    """One event with the state on connect, the next when a detector event changes the store."""
    events = []
    with TestClient(create_app(inst.config, inst.db, inst.bus)) as client, \
            client.stream("GET", "/api/v1/events", params={"max_events": 2}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
                if len(events) == 1:
                    inst.daq.event("systems_off", "off", "not_ready", "stream test")
    assert len(events) == 2
    assert events[0]["pulse"] != events[1]["pulse"]
    assert events[1]["detector"]["state"] == "off"


def test_monitor_on_postgresql(tmp_path):
    """The production store: every page, the event stream and metrics work on PostgreSQL."""
    with private_postgres_schema() as url:
        pg = installation(monitor_config(tmp_path / "wfms", url))
        try:
            pg.daq.bring_up()
            pg.daq.physics_run(601, 3)
            assert pg.orchestrator.wait_run_finished(601, 60)
            with TestClient(create_app(pg.config, pg.db, pg.bus)) as client:
                for path in ["/", "/state", "/runs/601", "/stfs/swf.000601.000000.stf",
                             "/jobs", "/sites", "/issues", "/users/x", "/metrics",
                             "/api/v1/summary", "/api/v1/events?max_events=1"]:
                    assert client.get(path).status_code == 200, path
                run = client.get("/api/v1/runs/601").json()
                assert run["counts"]["processed"] == 3  # the failing sequence (5) is not in it
        finally:
            pg.close()


def test_cli_mints_tokens_and_exports(inst):
    data_dir = str(inst.config.data_dir)
    runner = CliRunner()
    minted = runner.invoke(cli, ["monitor", "token", "--user", "olga", "--role", "operator",
                                 "--data-dir", data_dir])
    assert minted.exit_code == 0, minted.output
    principal = Authenticator(inst.config).verify(minted.output.strip())
    assert (principal.username, principal.roles) == ("olga", frozenset({"operator"}))
    bad = runner.invoke(cli, ["monitor", "token", "--user", "x", "--role", "king"])
    assert bad.exit_code != 0 and "king" in bad.output
    exported = runner.invoke(cli, ["monitor", "export", "--kind", "runs", "--data-dir", data_dir])
    assert exported.exit_code == 0, exported.output
    lines = [json.loads(line) for line in exported.output.splitlines()]
    assert [doc["number"] for doc in lines[1::2]] == [RUN]
