"""Pilot latency benchmark: a real Harvester provisioning real Pilot 3 workers on loopback.

    .venv/bin/python bench/harvester_bench.py [--jobs 6] [--gap 60] [--cycle 5]

One loopback PanDA server, one Harvester (its agents cycling every --cycle s) serving two
queues side by side, in the same run and under the same load:
  standing   BNL_EPIC_PROMPT, a standing pool of one worker: a pilot that stays and takes job
             after job (Pilot 3 waits 60 s after asking for a job and getting none)
  per-job    JLAB_EPIC_PROMPT, a worker per activated job: Harvester sees the activated job in
             PanDA's statistics, submits a worker, its pilot starts and fetches the job
Per queue, --jobs prompt jobs (one STF each, our reco payload) are activated one at a time,
each a random 0..--gap s after the previous one finished (60 s: anywhere in the idle pilot's
polling period). Measured from the moment PanDA shows
the job activated: until a pilot fetched it (sent/starting) and until it runs (running),
p50/p99 (with n this small p99 is the slowest), and how many workers Harvester made.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

from epic_wfms.model import naming
from epic_wfms.model.stf_file import write_stf
from epic_wfms.wfms.panda import taskparams
from epic_wfms.wfms.panda.client import PandaConnection, PandaSettings
from epic_wfms.wfms.panda.jobs import submit_stf_jobs
from loopback.harvester import LocalHarvester
from loopback.panda import LocalPandaServer
from loopback.panda.pilot import TRANSFORMATION

QUEUES = {"standing": ("BNL_EPIC_PROMPT", "E1_BNL"), "per-job": ("JLAB_EPIC_PROMPT", "E1_JLAB")}
FETCHED = {"sent", "starting", "running", "holding", "transferring", "finished", "failed"}
RUNNING = {"running", "holding", "transferring", "finished"}
ENDED = {"holding", "finished", "failed", "cancelled", "closed"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Lane(threading.Thread):
    """Activate one job at a time at ``queue`` and time its pickup."""

    def __init__(self, mode: str, panda: PandaConnection, harvester: LocalHarvester,
                 server: LocalPandaServer, args: argparse.Namespace, work: Path,
                 seed: int) -> None:
        super().__init__(name=mode, daemon=True)
        self.mode, self.panda, self.harvester, self.server = mode, panda, harvester, server
        self.args, self.work, self.rng = args, work, random.Random(seed)
        self.fetched: list[float] = []
        self.running: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # reported by main()
            self.error = error

    def _run(self) -> None:
        queue, site = QUEUES[self.mode]
        run = 800000 + (1 if self.mode == "standing" else 2)
        params = taskparams.prompt_task(run, site, taskparams.TaskOptions(
            site=queue, container_image=None, extra={"transPath": TRANSFORMATION}))
        task_id = self.panda.submit_task(params)
        for seq in range(1, self.args.jobs + 1):
            time.sleep(self.rng.uniform(0, self.args.gap))
            stf = naming.stf_filename(run, seq)
            path = self.work / stf
            write_stf(path, {"run_number": run, "sequence": seq}, 4, 30, random.Random(seq))
            self.harvester.stage(queue, {stf: path})
            [panda_id] = submit_stf_jobs(self.panda, task_id, params, [stf], queue)
            activated = self._wait(panda_id, {"activated"} | FETCHED | ENDED)
            self.fetched.append(self._wait(panda_id, FETCHED | ENDED) - activated)
            self.running.append(self._wait(panda_id, RUNNING | {"failed"}) - activated)
            self._wait(panda_id, ENDED)
            print(f"  {self.mode:9s} job {seq}: fetched {self.fetched[-1]:5.1f} s, "
                  f"running {self.running[-1]:5.1f} s after activation", flush=True)

    def _wait(self, panda_id: int, states: set[str], timeout_s: float = 600) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            [job] = self.panda.jobs([panda_id])
            if job.jobStatus in states:
                return time.monotonic()
            time.sleep(0.25)
        raise TimeoutError(f"{self.mode}: job {panda_id} never reached {sorted(states)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=6, help="jobs per queue")
    parser.add_argument("--gap", type=float, default=60.0, help="max pause between jobs (s)")
    parser.add_argument("--cycle", type=int, default=5, help="Harvester's agent cycle (s)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="epic-harvester-bench-"))
    server = LocalPandaServer(work / "panda").start()
    harvester = LocalHarvester(server, work / "harvester",
                               {QUEUES["standing"][0]: 1, QUEUES["per-job"][0]: None},
                               max_workers=2, cycle_s=args.cycle)
    try:
        harvester.start()
        who = server.identity("Epic Production", production=True)
        panda = PandaConnection(PandaSettings(server.url, who.token, who.auth_vo))
        (work / "stfs").mkdir()
        lanes = [Lane(mode, panda, harvester, server, args, work / "stfs", seed)
                 for seed, mode in enumerate(QUEUES)]
        print(f"Harvester agents every {args.cycle} s; {args.jobs} jobs per queue, "
              f"0..{args.gap:.0f} s apart", flush=True)
        for lane in lanes:
            lane.start()
        for lane in lanes:
            lane.join()
        for lane in lanes:
            if lane.error is not None:
                raise lane.error
        server.add_outputs()
        print(f"\n{'':10s}{'to fetched p50':>16s}{'p99':>8s}{'to running p50':>17s}"
              f"{'p99':>8s}{'workers':>9s}")
        for lane in lanes:
            queue = QUEUES[lane.mode][0]
            print(f"{lane.mode:10s}{statistics.median(lane.fetched):15.1f}s"
                  f"{percentile(lane.fetched, 0.99):7.1f}s"
                  f"{statistics.median(lane.running):16.1f}s"
                  f"{percentile(lane.running, 0.99):7.1f}s"
                  f"{len(harvester.workers(queue)):9d}")
    finally:
        harvester.stop()
        server.stop()


if __name__ == "__main__":
    main()
