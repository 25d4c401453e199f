"""The MCP server (``epic-wfms mcp``) driven by the official MCP SDK's own client, over stdio
(the server as a subprocess, as an assistant starts it) and streamable HTTP: it lists its
tools, reads a run from the store a real run filled, and refuses a control tool to a caller
without the role, with the REST API's what/why/fix."""

from __future__ import annotations

import os
import subprocess
import sys

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from epic_wfms.model import naming
from epic_wfms.monitor.auth import issue_token
from loopback.common import free_port
from tests.conftest import wait_for
from tests.monitor_helpers import installation, monitor_config

RUN = 501
N_STFS = 4
READS = {"get_run", "list_runs", "list_stfs", "get_stf", "list_jobs", "get_job", "list_tasks",
         "get_task", "list_issues", "state_history", "detector_state", "list_sites",
         "list_fabric_sites", "fastpath", "list_slices", "brokerage_decisions",
         "resource_usage", "list_submissions", "list_campaigns"}
CONTROLS = {"suspend_processing", "resume_processing", "kill_job", "retry_job",
            "set_job_priority", "kill_task", "retry_task", "set_task_priority",
            "kill_submission"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store filled by a real embedded run; the installation is closed before the MCP
    server reads it (as an assistant reads a site's store)."""
    config = monitor_config(tmp_path_factory.mktemp("monitor-mcp") / "wfms")
    inst = installation(config)
    inst.daq.bring_up()
    inst.daq.physics_run(RUN, N_STFS)
    assert inst.orchestrator.wait_run_finished(RUN, 60)
    inst.close()
    return config


def stdio_server(config, token: str | None = None) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPIC_WFMS_")}
    if token:
        env["EPIC_MCP_TOKEN"] = token
    return StdioServerParameters(command=sys.executable, env=env, args=[
        "-m", "epic_wfms.cli.main", "mcp", "--data-dir", str(config.data_dir)])


def error_text(result) -> str:
    assert result.is_error
    return " ".join(c.text for c in result.content)


def test_stdio_lists_tools_reads_a_run_and_refuses_control_without_the_role(store):
    async def session():
        async with Client(stdio_server(store)) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert tools >= READS | CONTROLS
            run = await client.call_tool("get_run", {"number": RUN})
            assert not run.is_error, run.content
            data = run.structured_content
            assert data["run"]["number"] == RUN and data["run"]["status"] == "finished"
            assert data["counts"]["produced"] == N_STFS
            stf = await client.call_tool("get_stf", {"filename": naming.stf_filename(RUN, 0)})
            assert stf.structured_content["timeline"][0]["step"] == "produced"
            missing = await client.call_tool("get_run", {"number": RUN + 1})
            assert "does not exist" in error_text(missing)
            refused = await client.call_tool("suspend_processing", {"reason": "assistant"})
            assert "authentication_required" in error_text(refused)
            bad = await client.call_tool("list_stfs", {"limit": 5000})
            assert bad.is_error  # bounded like the REST API's parameters

    anyio.run(session)


def test_stdio_caller_is_the_token_the_server_was_started_with(store):
    operator = issue_token(store, "olga", ["operator"])

    async def as_operator():
        async with Client(stdio_server(store, operator)) as client:
            who = (await client.call_tool("whoami", {})).structured_content
            assert who == {"user": "olga", "roles": ["operator"], "authenticated": True}
            held = await client.call_tool("suspend_processing", {"reason": "assistant test"})
            assert not held.is_error, held.content
            assert held.structured_content["username"] == "olga"
            again = await client.call_tool("suspend_processing", {"reason": "twice"})
            assert "already_suspended" in error_text(again)
            resumed = await client.call_tool("resume_processing", {"reason": "done"})
            assert not resumed.is_error, resumed.content

    anyio.run(as_operator)


def test_streamable_http_takes_the_bearer_token_of_each_request(store):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "epic_wfms.cli.main", "mcp", "--transport", "http", "--port",
         str(port), "--data-dir", str(store.data_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        assert wait_for(lambda: _listening(port), 30), proc.stderr.read1().decode()

        async def call(token: str | None, tool: str, args: dict):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with httpx2.AsyncClient(headers=headers, timeout=30) as http, \
                    Client(streamable_http_client(url, http_client=http)) as client:
                return await client.call_tool(tool, args)

        runs = anyio.run(call, None, "list_runs", {})
        assert [r["number"] for r in runs.structured_content["items"]] == [RUN]
        viewer = issue_token(store, "vic", ["viewer"])
        refused = anyio.run(call, viewer, "set_job_priority", {"job_id": 1, "priority": 5})
        text = error_text(refused)
        assert "[403 forbidden]" in text and "why:" in text and "fix:" in text
        unknown = anyio.run(call, viewer, "kill_task", {"task_id": 1, "reason": "x"})
        assert "[404 not_found] task 1 is not in the store" in error_text(unknown)
        manager = issue_token(store, "paula", ["production_manager"])
        allowed = anyio.run(call, manager, "set_job_priority", {"job_id": 1, "priority": 5})
        assert "job_not_active" in error_text(allowed)  # past the role check: the job ended
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _listening(port: int) -> bool:
    import socket
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
