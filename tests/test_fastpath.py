"""Fast processing path: TF slices on a standing worker pool (epic_wfms/fastpath).

The fast path runs on its own here (slicer + pool on the embedded bus and store), fed by the
real DAQ simulator; slowness comes from the payload's configuration (``extra_cost_s``).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from sqlalchemy import select

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.config import load_config
from epic_wfms.daq import DaqSettings
from epic_wfms.errors import ConfigurationError
from epic_wfms.fastpath.histograms import read_histograms
from epic_wfms.fastpath.results import fastpath_report
from epic_wfms.fastpath.slicing import plan_slices, sampled, selected
from epic_wfms.installation import Installation
from epic_wfms.model.stf import TFSample
from epic_wfms.store import fastpath as fp_store
from epic_wfms.store.schema import (
    FastPathAlarmRecord,
    FastPathScalingRecord,
    FastPathWorkerRecord,
    TfSliceRecord,
    utcnow,
)
from tests.conftest import wait_for

RUN = 401
SAMPLE_TFS = 10


class FastPathRig:
    """The fast path alone, driven by the DAQ simulator; ``seen`` collects bus messages."""

    def __init__(self, root: Path, database_url: str | None = None,
                 anomalous_tfs: dict | None = None, **fastpath: object) -> None:
        settings = {"pool": {"min": 1, "target": 2, "max": 2}, "drain_grace_s": 0.2, **fastpath}
        self.config = load_config(data_dir=root, database_url=database_url, fastpath=settings)
        self.installation = Installation.build(self.config, roles=["fastpath"])
        orchestrator = self.installation.start()
        self.ctx, self.fastpath = orchestrator.ctx, orchestrator.fastpath
        self.db = self.installation.db
        self.seen: dict[str, list[m.Message]] = {}
        for destination in (dest.ALARMS, dest.FASTPATH_RESULTS, dest.FASTPATH_POOL):
            self.installation.bus.subscribe(destination, f"test-{destination}", self._record,
                                            track=False)
        self.daq = self.installation.daq(DaqSettings(
            stf_size_bytes=8 * 1024, tfs_per_stf=20, rate_hz=0, tf_sample_size=SAMPLE_TFS,
            anomalous_tfs=anomalous_tfs or {}))
        self.daq.run_imminent(RUN)
        self.daq.start_run(RUN)
        assert wait_for(lambda: self.fastpath.pool.size == settings["pool"]["target"], 60)

    def _record(self, message: m.Message) -> None:
        self.seen.setdefault(message.msg_type, []).append(message)

    def feed(self, sequences: range) -> None:
        for sequence in sequences:
            self.daq.write_stf(RUN, sequence, utcnow())

    def end_run(self, total: int, timeout: float = 60) -> None:
        self.daq.end_run(RUN, total)
        assert self.fastpath.pool.wait_drained(timeout), self.slices()

    def slices(self) -> list[TfSliceRecord]:
        with self.db.session() as session:
            return list(session.scalars(select(TfSliceRecord).order_by(TfSliceRecord.id)))

    def rows(self, model) -> list:
        with self.db.session() as session:
            return list(session.scalars(select(model)))

    def close(self) -> None:
        self.installation.close()


@pytest.fixture
def rig_factory(tmp_path: Path):
    made: list[FastPathRig] = []

    def make(**kwargs) -> FastPathRig:
        rig = FastPathRig(tmp_path / f"fp{len(made)}", **kwargs)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_slices_flow_to_results_and_the_pool_drains_at_end_run(rig_factory, database_url):
    rig = rig_factory(database_url=database_url)
    rig.feed(range(4))
    rig.end_run(4)
    slices = rig.slices()
    # per STF: one express detector-status slice + 10 TFs / 5 per slice
    assert len(slices) == 4 * 3
    assert {s.status for s in slices} == {"completed"} and {s.attempts for s in slices} == {1}
    assert sum(s.express for s in slices) == 4
    assert sorted(msg.body.slice_name for msg in rig.seen["slice_result"]) == sorted(
        s.name for s in slices)
    event = rig.seen["slice_result"][0].body
    assert event.status == "completed" and event.latency_s is not None
    # each event counted exactly once in the rolling histograms
    hists = read_histograms(rig.db, RUN)
    assert {h["entries"] for h in hists.values()} == {4 * SAMPLE_TFS}
    assert sum(hists["event_hits"]["counts"]) + hists["event_hits"]["overflow"] == 40
    # drained: every worker exited, its payload process is gone
    workers = rig.rows(FastPathWorkerRecord)
    assert len(workers) == 2 and {w.status for w in workers} == {"exited"}
    assert not any(_alive(w.pid) for w in workers)
    assert sum(w.slices_done for w in workers) == 12
    assert len(rig.seen["worker_registered"]) == 2
    assert wait_for(lambda: len(rig.seen.get("worker_exited", [])) == 2, 10)
    report = fastpath_report(rig.db, RUN)
    assert report["slices"] == {"total": 12, "done": 12, "failed": 0, "retried": 0, "open": 0}
    assert report["slice_latency_s"]["n"] == 12
    # what the monitor pages read
    db = rig.db
    assert fp_store.slice_counts(db, RUN) == {"completed": 12}
    assert [w["status"] for w in fp_store.workers(db, RUN)] == ["exited", "exited"]
    recent = fp_store.recent_slices(db, RUN, limit=5)
    assert len(recent) == 5 and all(r["latency_s"] > 0 and r["n_events"] for r in recent)
    assert fp_store.scaling_decisions(db, RUN)[0]["reason"] == "provisioned at run_imminent"


def test_worker_killed_mid_slice_is_replaced_and_its_slice_retried_elsewhere(rig_factory):
    rig = rig_factory(payload={"extra_cost_s": 0.6})
    rig.feed(range(3))
    assert wait_for(lambda: any(s.status == "processing" for s in rig.slices()), 30)
    victim = next(s for s in rig.slices() if s.status == "processing")
    killed = next(w for w in rig.rows(FastPathWorkerRecord) if w.name == victim.worker)
    os.kill(killed.pid, signal.SIGKILL)
    rig.end_run(3)
    slices = {s.name: s for s in rig.slices()}
    assert {s.status for s in slices.values()} == {"completed"}, slices
    retried = slices[victim.name]
    assert retried.attempts == 2 and retried.worker != killed.name
    workers = {w.name: w for w in rig.rows(FastPathWorkerRecord)}
    assert workers[killed.name].status == "dead" and "died" in workers[killed.name].detail
    assert len(workers) == 3  # two provisioned, one replacement
    assert sum(w.slices_done for w in workers.values()) == len(slices)  # none counted twice
    hists = read_histograms(rig.db, RUN)
    assert hists["event_hits"]["entries"] == 3 * SAMPLE_TFS
    assert rig.seen["worker_replaced"][0].body.worker == killed.name
    assert fastpath_report(rig.db, RUN)["slices"]["retried"] == 1


def test_autoscaling_grows_under_slow_slices_and_shrinks_when_idle(rig_factory):
    rig = rig_factory(pool={"min": 1, "target": 1, "max": 3}, latency_target_s=0.4,
                      scale_cooldown_s=0.3, shrink_idle_s=0.5, payload={"extra_cost_s": 0.25})
    rig.feed(range(6))
    assert wait_for(lambda: rig.fastpath.pool.size == 3, 30)
    assert wait_for(lambda: {s.status for s in rig.slices()} == {"completed"}, 60)
    assert wait_for(lambda: rig.fastpath.pool.size == 1, 30)
    rig.end_run(6)
    decisions = rig.rows(FastPathScalingRecord)
    grown = [d for d in decisions if d.to_size > d.from_size and d.from_size > 0]
    shrunk = [d for d in decisions if d.to_size < d.from_size]
    assert grown and "expected latency" in grown[0].reason and grown[0].backlog > 0
    assert max(d.to_size for d in decisions) == 3  # never beyond pool.max
    assert shrunk and shrunk[-1].to_size == 1 and "idle" in shrunk[-1].reason
    assert len(rig.seen["pool_scaled"]) == len(decisions)


def test_express_work_overtakes_a_backlog(rig_factory):
    rig = rig_factory(pool={"min": 1, "target": 1, "max": 1}, slice_tfs=2,
                      payload={"extra_cost_s": 0.15})
    rig.feed(range(4))  # per STF: 1 express + 5 normal slices, one worker
    rig.end_run(4)
    slices = rig.slices()
    last_express = [s for s in slices if s.express][-1]
    overtaken = [s for s in slices if not s.express and s.queued_at < last_express.queued_at
                 and s.completed_at > last_express.completed_at]
    assert len(overtaken) >= 8, [(s.name, s.completed_at) for s in slices]


def test_a_single_event_anomaly_raises_an_alarm_message_and_row(rig_factory):
    rig = rig_factory(anomalous_tfs={1: {1}})
    rig.feed(range(3))
    rig.end_run(3)
    assert wait_for(lambda: len(rig.seen.get("alarm", [])) >= 2, 10)
    alarms = {a.body.kind: a.body for a in rig.seen["alarm"]}
    assert set(alarms) == {"saturated_event", "hot_channel"}
    event = alarms["saturated_event"]
    assert event.stf_filename == "swf.000401.000001.stf" and event.event == 1
    assert event.value == 1.0 and event.run_number == RUN
    rows = rig.rows(FastPathAlarmRecord)
    assert {(r.kind, r.event, r.stf_filename) for r in rows} == {
        ("saturated_event", 1, "swf.000401.000001.stf"),
        ("hot_channel", None, "swf.000401.000001.stf")}
    assert {a["kind"] for a in fp_store.alarms(rig.db, RUN)} == set(alarms)
    saturated = read_histograms(rig.db, RUN)["event_saturated_fraction"]
    assert saturated["counts"][-1] == 1  # the one anomalous event


def test_an_unreadable_sample_fails_after_bounded_retries(rig_factory, tmp_path: Path):
    rig = rig_factory(express_tfs=0, max_attempts=2)
    sample = TFSample(stf_filename="swf.000401.000007.stf", run_number=RUN, index=0,
                      filename="swf.000401.000007_tf_000.tf", first_tf=0, tf_count=5,
                      size_bytes=100, adler32="00000001")
    rig.daq._send(dest.TF_SAMPLES, "tf_sample_available", m.TfSampleAvailable(
        sample=sample, rse="DAQ_BUFFER", path=str(tmp_path / "missing.tf")), RUN)
    rig.end_run(1)
    (failed,) = rig.slices()
    assert failed.status == "failed" and failed.attempts == 2
    assert "cannot read" in failed.error and "missing.tf" in failed.error
    statuses = [r.body.status for r in rig.seen["slice_result"]]
    assert statuses == ["retrying", "failed"]


def test_sampling_selection_and_slicing_rules():
    assert [s for s in range(12) if sampled(s, 0.25)] == [3, 7, 11]
    assert sum(sampled(s, 0.1) for s in range(1000)) == 100
    config = load_config().fastpath
    assert selected(config, "run", "physics") and selected(config, "calib", "not_ready")
    assert not selected(config, "run", "standby") and not selected(config, "beam", "ready")
    sample = TFSample(stf_filename="swf.000401.000002.stf", run_number=RUN, index=0,
                      filename="swf.000401.000002_tf_000.tf", first_tf=0, tf_count=12,
                      size_bytes=100, adler32="00000001")
    works = plan_slices(m.TfSampleAvailable(sample=sample, rse="DAQ_BUFFER", path="/x"),
                        utcnow(), config.model_copy(update={"slice_tfs": 5}))
    assert [(w.slice_name, w.first_tf, w.tf_count, w.express) for w in works] == [
        ("swf.000401.000002_tf_000_status", 0, 2, True),
        ("swf.000401.000002_tf_000_slice_000", 0, 5, False),
        ("swf.000401.000002_tf_000_slice_001", 5, 5, False),
        ("swf.000401.000002_tf_000_slice_002", 10, 2, False),
    ]


def test_pool_bounds_are_checked_when_the_configuration_loads():
    with pytest.raises(ConfigurationError, match="min <= target <= max"):
        load_config(fastpath={"pool": {"min": 3, "target": 2, "max": 4}})


def test_a_select_entry_that_names_no_state_is_refused():
    with pytest.raises(ConfigurationError, match=r"names no detector state: run/physic;"):
        load_config(fastpath={"select": ["run/physic"]})
