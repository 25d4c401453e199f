"""Template benchmark: time to render 1,000 PanDA tasks, against a naive baseline.

    make bench            (or: .venv/bin/python bench/templates_bench.py --tasks 1000)

Both produce the same 1,000 JEDI task-parameter dictionaries (a reprocessing campaign of
500 runs, two tasks per run; and a simulation campaign of 250 Q2 bins, four tasks per bin):
  compiled   epic-wfms: the template is parsed and its Jinja2 expressions compiled once,
             then the whole campaign is rendered and turned into task parameters
  baseline   the naive way: re-read the YAML, rebuild the tag catalogue and recompile every
             expression for each run (or Q2 bin), as a script looping over requests would
The goal (issue 5) is under one second for 1,000 tasks.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from epic_wfms.templates.loader import TemplateLibrary, load_template_file
from epic_wfms.templates.render import CompiledTemplate, compile_template
from epic_wfms.templates.tags import TagCatalogue, default_tag_dir
from epic_wfms.templates.targets.panda import render_panda

CAMPAIGNS = {  # template -> (list parameter, tasks per item, base parameters)
    "reprocessing": ("runs", 2, {}),
    "simulation_campaign": ("q2_bins", 4, {"events": 1000}),
}


def _items(name: str, n_tasks: int) -> list[int]:
    per_item = CAMPAIGNS[name][1]
    return list(range(1, n_tasks // per_item + 1))


def compiled(library: TemplateLibrary, name: str, n_tasks: int) -> int:
    key, _, base = CAMPAIGNS[name]
    items = ",".join(str(i) for i in _items(name, n_tasks))
    workflow = compile_template(library, name).render({**base, key: items})
    return len(render_panda(workflow)["tasks"])


def baseline(library: TemplateLibrary, name: str, n_tasks: int) -> int:
    key, _, base = CAMPAIGNS[name]
    tasks = 0
    for item in _items(name, n_tasks):
        spec, digest = load_template_file(library.path(name))
        tags = TagCatalogue(default_tag_dir(library.directory))
        workflow = CompiledTemplate(spec, digest, tags).render({**base, key: str(item)})
        tasks += len(render_panda(workflow)["tasks"])
    return tasks


def measure(func: Callable[[], int], repeat: int) -> tuple[float, float, int]:
    """Median wall and CPU seconds (CPU is what counts on a shared machine) and tasks made."""
    walls, cpus, tasks = [], [], 0
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        tasks = func()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per campaign")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    args = parser.parse_args()
    library = TemplateLibrary()
    print(f"rendering {args.tasks} PanDA tasks per campaign (compiled: median of "
          f"{args.repeat} runs; baseline: one run)")
    print(f"{'campaign':20} {'compiled wall/cpu s':>20} {'baseline wall/cpu s':>20} "
          f"{'speed-up (cpu)':>15} {'tasks/s (cpu)':>14}  goal < 1 s")
    worst = 0.0
    for name in CAMPAIGNS:
        compile_template(library, name)  # the one-time parse + compile, as in a service
        wall, cpu, n_fast = measure(lambda n=name: compiled(library, n, args.tasks),
                                    args.repeat)
        b_wall, b_cpu, n_slow = measure(lambda n=name: baseline(library, n, args.tasks), 1)
        assert n_fast == n_slow == args.tasks, (n_fast, n_slow)
        worst = max(worst, cpu)
        print(f"{name:20} {wall:9.3f} / {cpu:6.3f} {b_wall:10.3f} / {b_cpu:7.3f} "
              f"{b_cpu / cpu:14.1f}x {n_fast / cpu:14.0f}  {'met' if cpu < 1.0 else 'MISSED'}")
    wall, cpu = time.perf_counter(), time.process_time()
    render_panda(compile_template(library, "calibration").render({"run": 1}))  # not cached yet
    print(f"cold start of one template (parse + compile + render): "
          f"{time.perf_counter() - wall:.3f} s wall, {time.process_time() - cpu:.3f} s cpu")
    print(f"worst campaign: {worst:.3f} s cpu for {args.tasks} tasks "
          "(wall time depends on the load of this shared machine)")


if __name__ == "__main__":
    main()
