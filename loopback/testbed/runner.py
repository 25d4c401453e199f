"""Run one of the testbed's workflows, unchanged, against a STOMP broker.

``workflows/workflow_runner.py --run-once <workflow>`` is started from the testbed's own tree
in its virtualenv, with the testbed's documented settings: ``ACTIVEMQ_*`` for the broker
(the testbed sends its broker host name as the STOMP virtual host), ``SWF_MONITOR_URL`` for
its monitor, ``SWF_PROMPT_PROCESSING_CONTAINER`` for where ``prompt_processing`` writes its
STF files, and a ``testbed.toml`` with its namespace and timing overrides.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from loopback.common import HarnessError
from loopback.testbed.venv import TestbedInstall


@dataclass
class TestbedSettings:
    __test__ = False  # not a pytest test class
    namespace: str
    broker_host: str = "127.0.0.1"
    broker_port: int = 61613
    user: str = "guest"
    password: str = "guest"
    container: Path | None = None  # where prompt_processing writes its STF files
    daq_state_machine: dict[str, float] = field(default_factory=dict)  # timing overrides

    def toml(self) -> str:
        lines = ["[testbed]", f'namespace = "{self.namespace}"']
        if self.daq_state_machine:
            lines.append("[daq_state_machine]")
            lines += [f"{key} = {value}" for key, value in self.daq_state_machine.items()]
        return "\n".join(lines) + "\n"


def run_workflow(install: TestbedInstall, settings: TestbedSettings, workflow: str,
                 monitor_url: str, workdir: Path, args: list[str], timeout: float = 300,
                 ) -> subprocess.CompletedProcess:
    """Run ``workflow`` once; its output goes to ``workdir/<workflow>.log``."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "testbed.toml"
    config.write_text(settings.toml())
    env = {
        "PATH": f"{install.venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "VIRTUAL_ENV": str(install.venv),  # the runner looks for an active virtualenv
        "HOME": str(workdir),  # its ~/.env is read if present: keep it private
        "USER": "testbed", "SWF_ENV_LOADED": "true",
        "SWF_MONITOR_URL": monitor_url, "SWF_MONITOR_HTTP_URL": monitor_url,
        "ACTIVEMQ_HOST": settings.broker_host, "ACTIVEMQ_PORT": str(settings.broker_port),
        "ACTIVEMQ_USER": settings.user, "ACTIVEMQ_PASSWORD": settings.password,
        "SWF_LOG_LEVEL": "INFO",
    }
    if settings.container is not None:
        env["SWF_PROMPT_PROCESSING_CONTAINER"] = str(settings.container)
    cmd = [str(install.python), str(install.testbed / "workflows" / "workflow_runner.py"),
           "--run-once", workflow, "--testbed-config", str(config), *args]
    log = workdir / f"{workflow}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=install.testbed, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise HarnessError(f"testbed workflow {workflow} did not end in {timeout:g} s",
                               log.read_text()[-1500:], "read the runner's log above") from None
    if code != 0:
        raise HarnessError(f"testbed workflow {workflow} failed (exit {code})",
                           log.read_text()[-1500:], "read the runner's log above")
    return subprocess.CompletedProcess(cmd, code, log.read_text(), "")
