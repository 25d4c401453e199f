"""PanDA submission benchmark against the real panda-server on loopback.

    .venv/bin/python bench/panda_bench.py [--tasks 40] [--jobs 200]

In one run, same server, same identity (OIDC token, production role):
  baseline   a bare authenticated API call (task/get_task_parameters) per request: the floor cost of
             one panda-client round trip through PanDA's auth, WSGI app and TaskBuffer
  tasks      epic-wfms submit_tasks: validation + panda-client insertTaskParams + store record
  refine     JEDI's TaskRefiner step (EpicTaskRefiner) over the submitted tasks, in one cycle
  jobs       PanDA jobs (one per STF) through panda-client job submission, in batches of 50
  jedi       JEDI's own job generation for a prompt task over --jobs STFs registered in the
             loopback Rucio server: one ContentsFeeder cycle (files read from Rucio into JEDI),
             one JobGenerator cycle (brokerage, splitting, one job per STF, stored, activated)
Prints requests/s for each and the ratio of a task submission to the bare round trip.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from epic_wfms.config import Config, RucioConfig
from epic_wfms.ddm.interface import DID, FileSpec
from epic_wfms.ddm.rse import LocalRSE
from epic_wfms.ddm.rucio.backend import RucioDDM
from epic_wfms.model import naming
from epic_wfms.store.database import Database
from epic_wfms.wfms.panda import taskparams
from epic_wfms.wfms.panda.client import PandaConnection, PandaSettings
from epic_wfms.wfms.panda.jobs import submit_stf_jobs
from epic_wfms.wfms.panda.submit import submit_tasks
from loopback.panda import LocalPandaServer
from loopback.rucio.server import LocalRucioServer, add_scope, provision


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:8.1f}/s  ({n} in {seconds:.2f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="epic-panda-bench-"))
    rucio = LocalRucioServer(work / "rucio", Path(__file__).resolve().parents[1] / ".venv-rucio")
    rucio.start()
    try:
        _bench(args, work, rucio)
    finally:
        rucio.stop()


def _stfs_in_rucio(rucio: LocalRucioServer, work: Path, run: int, n: int) -> None:
    """``n`` STF entries (catalog only: JEDI reads names, sizes, replicas) at BNL_DISK."""
    rses = [LocalRSE(r.name, r.site, r.type, work / "rses" / r.name) for r in Config().rses]
    ddm = RucioDDM(RucioConfig(host=rucio.url, username=rucio.username,
                               password=rucio.password, scope="epic"), rses)
    provision(ddm.client, rses)
    add_scope(ddm.client, "epic")
    dataset = DID("epic", naming.site_dataset(run, "E1_BNL"))
    ddm.add_dataset(dataset)
    specs = [FileSpec(DID("epic", naming.stf_filename(run, seq)), "BNL_DISK",
                      str(work / naming.stf_filename(run, seq)), 1000, "00000001")
             for seq in range(1, n + 1)]
    ddm.register_and_attach(specs, {dataset: [spec.did for spec in specs]})


def _bench(args, work: Path, rucio: LocalRucioServer) -> None:
    with LocalPandaServer(work / "server", rucio_config=rucio.config_file) as server:
        who = server.identity()
        conn = PandaConnection(PandaSettings(server.url, who.token, who.auth_vo))
        db = Database(f"sqlite:///{work / 'store.sqlite'}")
        db.create_schema()
        # first JEDI alone on the server: its cycles see only this task
        _stfs_in_rucio(rucio, work, 950001, args.jobs)
        [jedi_task] = submit_tasks([taskparams.prompt_task(950001, "E1_BNL", taskparams.TaskOptions(
            site="BNL_EPIC_PROMPT"))], conn, db)
        server.refine_tasks()
        [fed] = server.jedi_cycle("feed")
        [generated] = server.jedi_cycle("generate")
        if conn.task_status(jedi_task.jedi_task_id) != "running" or generated["jobs"] != args.jobs:
            raise SystemExit(f"JEDI did not generate {args.jobs} jobs: {generated}")

        first = submit_tasks([taskparams.prompt_task(900000, "E1_BNL")], conn, db)[0]

        t0 = time.perf_counter()
        for _ in range(args.tasks):
            conn.task_params(first.jedi_task_id)
        baseline = time.perf_counter() - t0

        params = [taskparams.prompt_task(900001 + i, site) for i in range(args.tasks // 2)
                  for site in ("E1_BNL", "E1_JLAB")]
        t0 = time.perf_counter()
        records = submit_tasks(params, conn, db)
        tasks = time.perf_counter() - t0

        t0 = time.perf_counter()
        refined = server.refine_tasks()
        refine = time.perf_counter() - t0

        stfs = [naming.stf_filename(900001, seq) for seq in range(1, args.jobs + 1)]
        t0 = time.perf_counter()
        for start in range(0, len(stfs), 50):
            submit_stf_jobs(conn, records[0].jedi_task_id, params[0], stfs[start:start + 50],
                            "BNL_EPIC_PROMPT")
        jobs = time.perf_counter() - t0

        db.dispose()

    print("PanDA on loopback (panda-server 1.0.4, gunicorn 1 worker, PostgreSQL)")
    print(f"  baseline  bare API round trip : {rate(args.tasks, baseline)}")
    print(f"  tasks     submit_tasks        : {rate(len(records), tasks)}")
    print(f"  refine    JEDI TaskRefiner    : {rate(len(refined), refine)}")
    print(f"  jobs      job submission      : {rate(len(stfs), jobs)}")
    print(f"  jedi-feed ContentsFeeder files : {rate(args.jobs, fed['seconds'])}")
    print(f"  jedi-gen  JobGenerator jobs   : {rate(generated['jobs'], generated['seconds'])}")
    print(f"  a task submission costs {(tasks / len(records)) / (baseline / args.tasks):.1f}x "
          "a bare round trip")


if __name__ == "__main__":
    main()
