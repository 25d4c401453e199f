"""One cycle of panda-server's Adder, in-process, with the PanDA venv's Python.

A pilot's final ``updateJob`` (finished or failed) leaves the job ``holding`` with its output
report in ``Job_Output_Report``; the server's ``add_main`` daemon then runs ``AdderGen`` per
report (the VO's adder plug-in registers outputs; ours is PanDA's dummy plug-in: data
placement is epic-wfms's Rucio rules) and moves the job to ``finished``/``failed``. The
daemon loops with process pools; this runs its per-report step once for every report:
``listJobOutputReport`` -> ``lockJobOutputReport`` -> ``AdderGen.run``.
Prints one JSON line: ``{"agent": "Adder", "jobs": [PandaID, ...], "seconds"}``.

Usage: PANDA_HOME=<server workdir> python adder_cycle.py
"""

from __future__ import annotations

import json
import os
import sys
import time


def run_once() -> list[int]:
    from pandaserver.config import panda_config
    from pandaserver.dataservice.adder_gen import AdderGen
    from pandaserver.taskbuffer.TaskBuffer import taskBuffer

    taskBuffer.init(panda_config.dbhost, panda_config.dbpasswd, nDBConnection=1)
    from pandaserver.brokerage.SiteMapper import SiteMapper

    site_mapper, pid, done = SiteMapper(taskBuffer), f"epic-adder-{os.getpid()}", []
    reports = taskBuffer.listJobOutputReport(only_unlocked=True, time_limit=10, limit=1000,
                                             grace_period=0) or []
    for panda_id, job_status, attempt_nr, _stamp in reports:
        if not taskBuffer.lockJobOutputReport(panda_id=panda_id, attempt_nr=attempt_nr, pid=pid,
                                              time_limit=10):
            continue
        AdderGen(taskBuffer, panda_id, job_status, attempt_nr, ignore_tmp_error=False,
                 siteMapper=site_mapper, pid=pid, prelock_pid=pid).run()
        done.append(int(panda_id))
    return done


if __name__ == "__main__":
    t0 = time.perf_counter()
    jobs = run_once()
    print(json.dumps({"agent": "Adder", "jobs": jobs,
                      "seconds": round(time.perf_counter() - t0, 3)}), flush=True)
    sys.stdout.flush()
    os._exit(0)  # the TaskBuffer's connection threads would keep the process alive
