"""Brokerage over the real catalogue: filters, locality, health, express lane, butterfly."""

from __future__ import annotations

import random

import pytest

from epic_wfms.brokerage import (
    ASSIGNED,
    DEFERRED,
    NO_CANDIDATE,
    Broker,
    ButterflyBalancer,
    Fabric,
    FabricState,
    JobRequest,
)
from epic_wfms.brokerage.health import AVOIDED, OK, PROBING, HealthPolicy
from epic_wfms.errors import ConfigurationError
from epic_wfms.sites import load_catalogue


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


@pytest.fixture
def state(catalogue):
    return FabricState(Fabric.from_catalogue(catalogue))


def fill(state: FabricState, queue: str, fraction: float = 1.0) -> None:
    q = state.fabric.queues[state.fabric.queue_index[queue]]
    state.running_cores[q.index] = int(q.cores * fraction)


def test_locality_preferred_when_capacity_allows(state):
    broker = Broker(state)
    req = JobRequest("reco-1", "reconstruction", cores=8, input_rses=("JLAB_DISK",),
                     input_gb=20)
    decision = broker.decide(req)
    assert decision.site == "E1_JLAB" and decision.reasons["input_at_site"] is True
    assert decision.reasons["components"]["locality"] == 1.0
    # the local queues full: the job goes where the cores are, and says the input moves
    for queue in ("JLAB_PROD", "JLAB_HIMEM"):
        fill(state, queue)
    moved = broker.decide(req)
    assert moved.site != "E1_JLAB"
    assert moved.reasons["input_at_site"] is False
    assert moved.reasons["components"]["locality"] < 1.0


def test_locality_follows_link_bandwidth(state):
    """Without a replica at the site, a job on a fat link beats a job on a thin one."""
    fab = state.fabric
    kisti, cnaf = fab.site_index["E2_KISTI"], fab.site_index["E2_CNAF"]
    bnl = fab.site_index["E1_BNL"]
    assert fab.bandwidth[bnl][kisti] == 40 and fab.bandwidth[bnl][cnaf] == 100
    locality, replicas = Broker(state, transfer_gbps_cap=1000)._locality_scores(
        JobRequest("x", "simulation", input_rses=("BNL_DISK",), input_gb=50))
    assert replicas == {bnl}
    assert locality[bnl] == 1.0 > locality[cnaf] > locality[kisti] > 0


def test_gpu_job_never_lands_on_a_cpu_only_queue(state):
    rng = random.Random(7)
    broker = Broker(state)
    cpu_only = {q.index for q in state.fabric.queues if q.gpus_per_node == 0}
    placed = 0
    for i in range(3000):
        for q in state.fabric.queues:  # random load, random failures, random sizes
            state.running_cores[q.index] = rng.randrange(q.cores + 1)
            state.queued[q.index] = rng.randrange(q.max_queued + 1)
        req = JobRequest(f"ml-{i}", rng.choice(["ml", "simulation", "calibration"]),
                         cores=rng.choice([1, 4, 8, 12]), gpus=rng.choice([1, 2, 4]),
                         memory_per_core_gb=rng.choice([1, 2, 4]))
        decision = broker.decide(req)
        if decision.outcome == ASSIGNED:
            placed += 1
            assert decision.queue_index not in cpu_only, decision.explain()
            assert state.fabric.queues[decision.queue_index].gpus_per_node >= req.gpus
        else:
            assert decision.outcome == NO_CANDIDATE and decision.reasons["rejected"]
    assert placed > 1000


def test_filters_name_what_excluded_the_queues(state):
    broker = Broker(state)
    arm = broker.decide(JobRequest("a", "simulation", cores=8, arch="aarch64"))
    assert arm.queue == "BRISTOL_GRACE_ARM"
    assert arm.reasons["rejected"]["arch"] > 0
    himem = broker.decide(JobRequest("h", "calibration", cores=8, memory_per_core_gb=24))
    assert himem.queue == "GSI_HIMEM" and himem.reasons["rejected"]["memory"] > 0
    impossible = broker.decide(JobRequest("x", "streaming", cores=8, gpus=1))
    assert impossible.outcome == NO_CANDIDATE
    assert "gpu" in impossible.reasons["summary"] or "workflow_class" in impossible.reasons[
        "summary"]
    long = broker.decide(JobRequest("l", "simulation", cores=8, walltime_s=100 * 3600))
    assert long.queue == "DRAC_FIR" and long.reasons["rejected"]["walltime"] > 0


def test_opportunistic_slots_take_only_low_criticality_work(state):
    broker = Broker(state)
    for q in state.fabric.queues:
        if q.pledged:
            state.running_cores[q.index] = q.cores  # everything pledged is busy
    assert broker.decide(JobRequest("s", "simulation", cores=8)).outcome == ASSIGNED
    reco = broker.decide(JobRequest("r", "reconstruction", cores=8))
    assert reco.outcome == ASSIGNED
    assert state.fabric.queues[reco.queue_index].pledged  # waits on a pledged queue


def test_express_lane_uses_the_reserve_and_prefers_big_sites(state):
    broker = Broker(state)
    for q in state.fabric.queues:
        state.running_cores[q.index] = q.cores - q.express_reserve_cores
    normal = broker.decide(JobRequest("n", "calibration", cores=8))
    express = broker.decide(JobRequest("e", "calibration", cores=8, priority=950, clone=True))
    assert express.reasons["lane"] == "express" and normal.reasons["lane"] == "normal"
    assert express.reasons["components"]["capacity"] > 0
    assert normal.reasons["components"]["capacity"] == 0
    assert express.site in {"E1_BNL", "E1_JLAB"}
    assert express.clone_site and express.clone_site != express.site  # R7.5 job cloning


def test_site_going_bad_is_avoided_within_minutes_and_retried_later(catalogue):
    policy = HealthPolicy(window_s=300, min_failures=5, backoff_s=600)
    state = FabricState(Fabric.from_catalogue(catalogue), policy)
    broker = Broker(state)
    req = JobRequest("c", "analysis", cores=4, input_rses=("MIT_DISK",), input_gb=10)
    mit = state.fabric.site_index["E2_MIT"]
    assert broker.decide(req, 0).site == "E2_MIT"
    for t in range(0, 150, 30):  # five failures in two and a half minutes
        state.health.record(mit, False, float(t))
    assert state.health.status(mit, 150) == AVOIDED
    avoided = broker.decide(req, 151)
    assert avoided.site != "E2_MIT" and avoided.reasons["rejected"]["site_unavailable"] == 1
    state.health.refresh(400)
    assert state.health.status(mit, 400) == AVOIDED
    state.health.refresh(760)  # backoff over: probing, usable again with a penalty
    assert state.health.status(mit, 760) == PROBING
    probing = broker.decide(req, 760)
    assert probing.outcome == ASSIGNED
    state.health.record(mit, False, 800)  # fails while probing: avoided twice as long
    assert state.health.status(mit, 801) == AVOIDED
    state.health.refresh(800 + 1199)
    assert state.health.status(mit, 1999) == AVOIDED
    state.health.refresh(2001)
    state.health.record(mit, True, 2002)  # a success while probing clears it
    assert state.health.status(mit, 2003) == OK
    assert broker.decide(req, 2003).site == "E2_MIT"


def test_declared_downtime_excludes_a_site(state):
    broker = Broker(state)
    req = JobRequest("d", "analysis", cores=4, input_rses=("MIT_DISK",), input_gb=10)
    mit = state.fabric.site_index["E2_MIT"]
    state.health.add_downtime(mit, 100, 200)
    state.health.refresh(150)
    assert broker.decide(req, 150).site != "E2_MIT"
    state.health.refresh(200)
    assert broker.decide(req, 200).site == "E2_MIT"


def test_butterfly_balances_and_fails_over(state):
    balancer = ButterflyBalancer(state)
    sites = [balancer.route(f"stf-{i}").site for i in range(100)]
    assert sites.count("E1_BNL") == sites.count("E1_JLAB") == 50
    bnl, jlab = state.fabric.site_index["E1_BNL"], state.fabric.site_index["E1_JLAB"]
    state.health.add_downtime(jlab, 0, 1000)
    state.health.refresh(10)
    during = [balancer.route(f"stf-j{i}", 10) for i in range(20)]
    assert {d.site for d in during} == {"E1_BNL"}
    assert during[0].reasons["degraded"] == {"E1_JLAB": "downtime"}
    state.health.refresh(1000)
    assert {balancer.route(f"stf-b{i}", 1000).site for i in range(4)} == {"E1_BNL", "E1_JLAB"}
    # the BNL-JLab link at 2% (8 Gbit/s) carries only part of the stream to JLab
    state.set_link("E1_BNL", "E1_JLAB", 0.02)
    eff, degraded = balancer.effective_fractions(1000)
    assert 0 < eff[jlab] < 0.5 < eff[bnl] and "E1_JLAB" in degraded
    state.set_link("E1_BNL", "E1_JLAB", 0.0)
    assert {balancer.route(f"stf-l{i}", 1000).site for i in range(10)} == {"E1_BNL"}
    state.health.add_downtime(bnl, 1000, 2000)
    state.health.refresh(1500)  # BNL down and the link cut: nowhere to go, keep the STF
    held = balancer.route("stf-held", 1500)
    assert held.outcome == DEFERRED and "DAQ buffer" in held.reasons["summary"]


def test_only_catalogued_links_can_be_degraded(state):
    with pytest.raises(ConfigurationError, match="no link between E2_KISTI and E1_JLAB"):
        state.set_link("E2_KISTI", "E1_JLAB", 0.0)


def test_decisions_are_fast_enough_to_matter_nowhere_else(state):
    """Structure, not speed (speed is in bench/): cached candidates are reused per kind."""
    broker = Broker(state)
    broker.decide(JobRequest("a", "simulation"))
    broker.decide(JobRequest("b", "simulation"))
    assert len(broker._static) == 1
