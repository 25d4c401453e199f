"""Streaming latency through the whole loopback PanDA stack, running as a chain.

    .venv/bin/python bench/panda_stack_bench.py [--stfs 15] [--gap 4] [--loop 2] [--pool 0]
                                                [--workers 3]

Starts a Rucio server and the stack (``loopback.stack.panda_stack``: PanDA server + JEDI's
master + the server's daemons + Harvester with Pilot 3 workers), opens a run's E1 dataset,
attaches its first STF, submits the prompt task (``runUntilClosed``), then attaches the other
STFs one every 0..--gap s (random). Per STF, from the moment it is attached in Rucio:

  activated   JEDI made its job and the server activated it (job seen in PanDA)
  running     a pilot runs it (PanDA ``running`` or later)
  registered  its output is attached to the task's output dataset in Rucio (the Adder)

p50/p99 (with n this small p99 is the slowest), by polling every 0.5 s. --pool N: a standing
pool of N pilots at the queue instead of a worker per activated job. Closing the dataset at
the end, the time until the task is ``done``.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from epic_wfms.config import Config, RucioConfig
from epic_wfms.ddm.interface import DID, FileSpec
from epic_wfms.ddm.rse import LocalRSE
from epic_wfms.ddm.rucio.backend import RucioDDM
from epic_wfms.model import naming
from epic_wfms.model.checksum import file_adler32
from epic_wfms.model.stf_file import write_stf
from epic_wfms.wfms.panda import taskparams
from loopback.panda.pilot import TRANSFORMATION
from loopback.rucio.server import LocalRucioServer, provision
from loopback.stack import RucioEndpoint, panda_stack

QUEUE, RSE, SITE, RUN = "BNL_EPIC_PROMPT", "BNL_DISK", "E1_BNL", 500001
RUNNING = {"running", "holding", "transferring", "finished"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rses(root: Path) -> list[LocalRSE]:
    config = Config()
    return [LocalRSE(r.name, r.site, r.type, root / r.name,
                     deterministic=r.name != config.daq_rse) for r in config.rses]


def attach(ddm: RucioDDM, dataset: DID, seq: int) -> str:
    name = naming.stf_filename(RUN, seq)
    path = Path(ddm.rse(RSE).path_for("epic", name))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_stf(path, {"run_number": RUN, "sequence": seq}, 4, 30, random.Random(seq))
    ddm.register_and_attach([FileSpec(DID("epic", name), RSE, str(path), path.stat().st_size,
                                      file_adler32(path))], {dataset: [DID("epic", name)]})
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stfs", type=int, default=15)
    parser.add_argument("--gap", type=float, default=4.0)
    parser.add_argument("--loop", type=int, default=2, help="JEDI's loop cycle (s)")
    parser.add_argument("--pool", type=int, default=0, help="standing pilots (0: per job)")
    parser.add_argument("--workers", type=int, default=3, help="pilots at most at the queue")
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="panda-stack-bench-") as tmp:
        work = Path(tmp)
        rucio_server = LocalRucioServer(work / "rucio").start()
        try:
            local_rses = rses(work / "rses")
            admin = RucioConfig(host=rucio_server.url, username=rucio_server.username,
                                password=rucio_server.password)
            provision(RucioDDM(admin, local_rses).client, local_rses)
            rucio = RucioEndpoint(rucio_server.config_file, rucio_server.url,
                                  rucio_server.username, rucio_server.password,
                                  tuple(local_rses))
            t_start = time.monotonic()
            with panda_stack(work / "stack", rucio, jedi_loop_s=args.loop,
                             pools={QUEUE: args.pool or None},
                             max_workers=args.workers) as stack:
                print(f"stack up in {time.monotonic() - t_start:.1f} s", flush=True)
                run(stack, RucioDDM(RucioConfig(host=rucio.url, username=rucio.username,
                                                password=rucio.password, scope="epic"),
                                    local_rses), args, rng)
        finally:
            rucio_server.stop()


def run(stack, ddm: RucioDDM, args: argparse.Namespace, rng: random.Random) -> None:
    panda = stack.connection()
    dataset = DID("epic", naming.site_dataset(RUN, SITE))
    out = DID("epic", f"{naming.site_dataset(RUN, SITE)}.reco")
    ddm.add_dataset(dataset)
    attached = {attach(ddm, dataset, 1): time.monotonic()}
    task_id = panda.submit_task(taskparams.prompt_task(RUN, SITE, taskparams.TaskOptions(
        site=QUEUE, container_image=None, extra={"transPath": TRANSFORMATION})))
    seen: dict[str, dict[str, float]] = {"activated": {}, "running": {}, "registered": {}}
    next_seq, next_at = 2, time.monotonic() + rng.uniform(0, args.gap)
    deadline = time.monotonic() + 120 + 30 * args.stfs
    while len(seen["registered"]) < args.stfs and time.monotonic() < deadline:
        now = time.monotonic()
        if next_seq <= args.stfs and now >= next_at:
            attached[attach(ddm, dataset, next_seq)] = time.monotonic()
            next_seq, next_at = next_seq + 1, time.monotonic() + rng.uniform(0, args.gap)
        ids = panda.job_ids(task_id)
        for job in panda.jobs(ids) if ids else []:
            [stf] = [f.lfn for f in job.Files if f.type == "input"]
            seen["activated"].setdefault(stf, now)
            if job.jobStatus in RUNNING:
                seen["running"].setdefault(stf, now)
        if ddm.is_open(out) if _exists(ddm, out) else False:
            for did in ddm.list_files(out):
                seen["registered"].setdefault(did.name, now)
        time.sleep(0.5)
    t_close = time.monotonic()
    ddm.close_dataset(dataset)
    while panda.task_status(task_id) != "done" and time.monotonic() < t_close + 300:
        time.sleep(1)
    t_done = time.monotonic() - t_close
    span = max(seen["registered"].values(), default=t_close) - min(attached.values())
    print(f"{args.stfs} STFs, one every 0..{args.gap:g} s, JEDI loop {args.loop} s, "
          f"{'standing pool of ' + str(args.pool) if args.pool else 'a worker per job'}, "
          f"at most {args.workers} pilots")
    for what in ("activated", "running"):
        lat = [seen[what][s] - attached[s] for s in attached if s in seen[what]]
        print(f"  attached -> {what:10s}: p50 {percentile(lat, 0.5):6.1f} s  "
              f"p99 {percentile(lat, 0.99):6.1f} s  (n={len(lat)})")
    reg = sorted(seen["registered"].values())
    att = sorted(attached.values())  # outputs carry JEDI's serial numbers, not STF names
    lat = [r - a for r, a in zip(reg, att, strict=False)]
    print(f"  attached -> registered: p50 {percentile(lat, 0.5):6.1f} s  "
          f"p99 {percentile(lat, 0.99):6.1f} s  (n={len(lat)}, k-th output vs k-th STF)")
    print(f"  throughput: {len(reg)} outputs in {span:.1f} s; closed -> task done "
          f"{t_done:.1f} s; supervisor restarts {stack.restarts()}")


def _exists(ddm: RucioDDM, did: DID) -> bool:
    try:
        ddm.is_open(did)
        return True
    except Exception:  # not created yet (the Adder creates it with the first output)
        return False


if __name__ == "__main__":
    main()
