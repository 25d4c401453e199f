"""iDDS submission benchmark against the real idds-server on loopback.

    .venv/bin/python bench/idds_bench.py [--requests 40]

In one run, same server, same identity (OIDC token of the loopback issuer):
  baseline   an authenticated ``ping`` per request: the floor cost of one idds-client round
             trip through iDDS's OIDC check and Flask app
  submit     ``IddsConnection.submit`` of a calibration loop (2 EpicPandaWorks, 2 conditions):
             idds-client's ClientManager.submit, iDDS decodes the workflow and stores it
  read back  ``IddsConnection.request``: the request with its workflow rebuilt from JSON
  daemons    iDDS's Clerk + Transformer (one daemon process, 1 s poll): seconds from their
             start until every request has a transform and a processing
Prints requests/s for each and the ratio of a submission to the bare round trip.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from epic_wfms.wfms.idds import workflows
from epic_wfms.wfms.idds.client import IddsConnection, IddsSettings
from epic_wfms.wfms.panda import taskparams
from loopback.idds import LocalIddsServer


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:8.1f}/s  ({n} in {seconds:.2f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    logging.disable(logging.INFO)  # idds-client logs every submission at INFO
    n = args.requests
    with LocalIddsServer(Path(tempfile.mkdtemp(prefix="epic-idds-bench-"))) as server:
        conn = IddsConnection(IddsSettings(server.url, server.token("Epic Bench"), retries=1))
        loops = []
        for i in range(n):
            calib = taskparams.prompt_task(900000 + i, "E1_BNL")
            calib["taskName"] += ".calib"
            loops.append(workflows.calibration_loop(
                calib, taskparams.prompt_task(900000 + i, "E1_BNL"), tolerance=0.05))

        t0 = time.perf_counter()
        for _ in range(n):
            conn.ping()
        baseline = time.perf_counter() - t0

        t0 = time.perf_counter()
        ids = [conn.submit(loop) for loop in loops]
        submit = time.perf_counter() - t0

        t0 = time.perf_counter()
        for request_id in ids:
            conn.request(request_id)
        read_back = time.perf_counter() - t0

        server.start_daemons(["clerk", "transformer"])
        daemons = server.wait_for("a processing for every request", lambda: len(server.query(
            "SELECT DISTINCT request_id FROM doma_idds.processings")) >= n, timeout_s=300)

    print(f"  baseline  authenticated ping   : {rate(n, baseline)}")
    print(f"  submit    calibration loop     : {rate(n, submit)}")
    print(f"  read back request + workflow   : {rate(n, read_back)}")
    print(f"  daemons   Clerk + Transformer  : {n} requests -> transforms + processings "
          f"in {daemons:.1f} s (first cycle starts ~10 s after the daemons)")
    print(f"  a submission costs {submit / baseline:.1f}x a bare round trip")


if __name__ == "__main__":
    main()
