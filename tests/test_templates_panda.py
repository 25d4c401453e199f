"""The PanDA target against panda-client itself: for every step of every shipped template,
the task parameters we render equal what ``prun`` builds for the same command line
(``PrunScript.main(get_taskparams=True)``), apart from the JEDI parameters prun has no
option for (``PRUN_LACKS``), which must then be absent from prun's dictionary."""

from __future__ import annotations

import os
import sys

import pytest

from epic_wfms.templates import TemplateLibrary, render_template
from epic_wfms.templates.render import example_values
from epic_wfms.templates.targets.panda import (
    PANDA_CLIENT_VERSION,
    PRUN_LACKS,
    produced_containers,
    prun_arguments,
    render_panda,
    task_params,
)

LIBRARY = TemplateLibrary()


@pytest.fixture(scope="module")
def prun(tmp_path_factory):
    """panda-client's own task-parameter builder, offline (dry mode, loopback URLs)."""
    env = {"PANDA_URL_SSL": "https://127.0.0.1:25443/server/panda",
           "PANDA_URL": "http://127.0.0.1:25080/server/panda",
           "PANDACACHE_URL": "https://127.0.0.1:25443/server/panda",
           "PANDA_BEHIND_REAL_LB": "1",
           "PANDA_CONFIG_ROOT": str(tmp_path_factory.mktemp("panda_config"))}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from pandaclient import Client, PandaToolsPkgInfo, PrunScript

    # Client reads its URLs at import; another test may have imported it first
    urls = {"baseURL": env["PANDA_URL"], "baseURLSSL": env["PANDA_URL_SSL"],
            "baseURLCSRVSSL": env["PANDACACHE_URL"]}
    saved_urls = {name: getattr(Client, name) for name in urls}
    for name, value in urls.items():
        setattr(Client, name, value)

    assert PandaToolsPkgInfo.release_version == PANDA_CLIENT_VERSION
    workdir = tmp_path_factory.mktemp("prun_workdir")

    def build(args: list[str]) -> dict:
        cwd, argv = os.getcwd(), sys.argv
        os.chdir(workdir)
        sys.argv = ["prun", *args]
        try:
            # -y answers prun's interactive memory question; it is not a task parameter
            return PrunScript.main(get_taskparams=True, dry_mode=True, ext_args=[*args, "-y"])
        finally:
            os.chdir(cwd)
            sys.argv = argv

    yield build
    for name, value in saved_urls.items():
        setattr(Client, name, value)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _rendered(name: str):
    spec, _ = LIBRARY.load(name)
    return render_template(name, example_values(spec), LIBRARY)


@pytest.mark.parametrize("name", LIBRARY.names())
def test_every_step_equals_what_prun_builds(name, prun):
    workflow = _rendered(name)
    produced = produced_containers(workflow)
    for step in workflow.steps:
        ours = task_params(step, workflow, produced)
        theirs = prun(prun_arguments(step, workflow, produced))
        extras = {k: ours.pop(k) for k in PRUN_LACKS if k in ours and k not in theirs}
        assert set(extras) >= {"taskPriority", "campaign"}
        assert ours == theirs, f"{name}/{step.name} differs from prun"


def test_campaign_settings_reach_the_task(prun):
    workflow = render_template("fast_monitoring", {"run": 7, "priority": 950}, LIBRARY)
    task = render_panda(workflow)["tasks"][0]
    assert task["vo"] == "epic" and task["prodSourceLabel"] == "managed"
    assert task["taskPriority"] == 950 and task["currentPriority"] == 950
    assert task["useJobCloning"] == "runonce" and task["nSitesPerJob"] == 2
    assert task["gshare"] == "express" and task["campaign"] == "26.11.0"
    assert task["container_name"].startswith("docker://eicweb/")
