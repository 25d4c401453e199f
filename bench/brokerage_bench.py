"""Brokerage benchmark: decisions per second over the full fabric, and a simulated day.

    make bench            (or: .venv/bin/python bench/brokerage_bench.py --help)

Measured in one run, on the shipped catalogue (site_configs/, ~110k cores, 19 sites):
  brokerage   ``Broker.decide`` on a realistic request mix (all workflow classes, inputs at
              random RSEs, GPU/ARM/high-memory needs, express work) against a fabric whose
              load changes as decisions are committed and jobs end; goal >= 10,000/s
  butterfly   ``ButterflyBalancer.route`` for STFs
  baseline    the naive broker (brokerage/naive.py: pydantic validation and catalogue walks
              per decision) on the same requests - the yardstick
  simulation  wall time of ``FabricSimulation`` for one simulated day (campaign + stream)
"""

from __future__ import annotations

import argparse
import json
import random
import time

from epic_wfms.brokerage import ASSIGNED, Broker, ButterflyBalancer, Fabric, FabricState
from epic_wfms.brokerage.naive import NaiveBroker
from epic_wfms.brokerage.request import JobRequest
from epic_wfms.simulation import FabricSimulation, SimSettings
from epic_wfms.sites import load_catalogue

MIX = [  # (class, cores, memory/core, gpus, arch, input_gb, weight)
    ("simulation", 8, 2, 0, None, 0, 30),
    ("simulation", 8, 2, 0, "aarch64", 0, 3),
    ("reconstruction", 8, 2, 0, None, 16, 20),
    ("reprocessing", 8, 2, 0, None, 16, 10),
    ("calibration", 8, 3, 0, None, 8, 5),
    ("calibration", 8, 16, 0, None, 8, 2),
    ("analysis", 4, 2, 0, None, 4, 20),
    ("ml", 12, 4, 1, None, 0, 5),
    ("streaming", 8, 2, 0, None, 2, 5),
]


def requests(n: int, rses: list[str], seed: int) -> list[JobRequest]:
    rng = random.Random(seed)
    weights = [m[-1] for m in MIX]
    out = []
    for i in range(n):
        wf, cores, mem, gpus, arch, gb, _ = rng.choices(MIX, weights)[0]
        out.append(JobRequest(
            f"job-{i}", wf, cores=cores, memory_per_core_gb=mem, gpus=gpus, arch=arch,
            walltime_s=rng.choice([2, 6, 12]) * 3600.0,
            input_rses=(rng.choice(rses),) if gb else (), input_gb=gb,
            priority=950 if rng.random() < 0.05 else 500))
    return out


def bench_broker(reqs: list[JobRequest], catalogue) -> dict:
    state = FabricState(Fabric.from_catalogue(catalogue))
    broker = Broker(state)
    rng = random.Random(1)
    live: list[tuple[int, str, int]] = []
    assigned = 0
    start, cpu = time.perf_counter(), time.process_time()
    for req in reqs:
        d = broker.decide(req)
        if d.outcome == ASSIGNED:  # the fabric fills and drains as in production
            assigned += 1
            state.commit(d.queue_index, req.workflow_class, req.cores)
            state.start(d.queue_index, req.workflow_class, req.cores)
            live.append((d.queue_index, req.workflow_class, req.cores))
        if len(live) > 8000:
            q, wf, cores = live.pop(rng.randrange(len(live)))
            state.finish(q, wf, cores)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"decisions": len(reqs), "seconds": round(elapsed, 3),
            "per_s": round(len(reqs) / elapsed), "per_cpu_s": round(len(reqs) / cpu),
            "assigned": assigned}


def bench_butterfly(n: int, catalogue) -> dict:
    balancer = ButterflyBalancer(FabricState(Fabric.from_catalogue(catalogue)))
    start = time.perf_counter()
    for i in range(n):
        balancer.route(f"stf-{i}", float(i))
    elapsed = time.perf_counter() - start
    return {"decisions": n, "per_s": round(n / elapsed)}


def bench_naive(reqs: list[JobRequest], catalogue) -> dict:
    naive = NaiveBroker(catalogue)
    start, cpu = time.perf_counter(), time.process_time()
    for req in reqs:
        naive.decide(req)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"decisions": len(reqs), "seconds": round(elapsed, 3),
            "per_s": round(len(reqs) / elapsed), "per_cpu_s": round(len(reqs) / cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--baseline-decisions", type=int, default=1_000)
    parser.add_argument("--sim-hours", type=float, default=24.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    catalogue = load_catalogue()
    rses = [s.rse for site in catalogue for s in site.storage if s.type == "DISK"]
    reqs = requests(args.decisions, rses, seed=7)
    result = {
        "fabric": {"sites": len(catalogue.sites), "cores": catalogue.cores,
                   "queues": sum(1 for _ in catalogue.queues())},
        "brokerage": bench_broker(reqs, catalogue),
        "butterfly": bench_butterfly(args.decisions, catalogue),
        "baseline_naive": bench_naive(reqs[: args.baseline_decisions], catalogue),
    }
    result["speedup_vs_baseline"] = round(
        result["brokerage"]["per_s"] / result["baseline_naive"]["per_s"], 1)
    start, cpu = time.perf_counter(), time.process_time()
    report = FabricSimulation(catalogue, SimSettings(hours=args.sim_hours)).run()
    result["simulation"] = {
        "simulated_hours_window": args.sim_hours,
        "simulated_hours_total": report["simulated_hours"],
        "wall_time_s": round(time.perf_counter() - start, 1),
        "cpu_time_s": round(time.process_time() - cpu, 1),
        "decisions": report["brokerage"]["decisions"],
        "stfs": report["streaming"]["stfs_produced"], "stfs_lost": report["streaming"]["lost"],
        "campaign_jobs": report["campaign"]["jobs"],
        "campaign_complete_h": report["campaign"]["time_to_complete_h"],
        "utilisation": report["utilisation"],
    }
    if args.json:
        print(json.dumps(result))
        return
    b, n = result["brokerage"], result["baseline_naive"]
    print(f"fabric: {result['fabric']}")
    print(f"brokerage:  {b['per_s']:>9,} decisions/s wall ({b['per_cpu_s']:,}/s of CPU time; "
          f"{b['decisions']:,} in {b['seconds']} s, {b['assigned']:,} assigned)   goal >= "
          f"10,000/s: {'met' if b['per_s'] >= 10_000 else 'NOT met'} (wall clock)")
    print(f"butterfly:  {result['butterfly']['per_s']:>9,} STF routings/s")
    print(f"baseline:   {n['per_s']:>9,} decisions/s wall ({n['per_cpu_s']:,}/s of CPU time; "
          f"naive broker, {n['decisions']:,} decisions)   -> {result['speedup_vs_baseline']}x")
    s = result["simulation"]
    print(f"simulation: {s['simulated_hours_window']} h window ({s['simulated_hours_total']} h "
          f"until the campaign completed) in {s['wall_time_s']} s wall ({s['cpu_time_s']} s "
          f"CPU); {s['decisions']:,} "
          f"decisions, {s['stfs']:,} STFs (lost {s['stfs_lost']}), {s['campaign_jobs']:,} "
          f"campaign jobs, utilisation {s['utilisation']:.0%}")


if __name__ == "__main__":
    main()
