"""``epic-wfms mcp``: the monitor over MCP (Model Context Protocol) for AI assistants, on stdio
(an assistant starts it as a subprocess) or streamable HTTP (``--transport http``)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from epic_wfms.cli.monitor import CONFIG, DATA_DIR, _config
from epic_wfms.errors import EpicWfmsError


@click.command()
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio",
              show_default=True, help="stdio: talk on stdin/stdout; http: streamable HTTP.")
@click.option("--host", default=None, help="HTTP: address to listen on (monitor.host).")
@click.option("--port", type=int, default=8471, show_default=True, help="HTTP: port.")
@click.option("--token-file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              default=None, help="stdio: bearer token of the caller (else EPIC_MCP_TOKEN); "
              "over HTTP each request brings its own Authorization header.")
@CONFIG
@DATA_DIR
def mcp(transport: str, host: str | None, port: int, token_file: Path | None,
        config_path: Path | None, data_dir: Path | None) -> None:
    """Serve the monitor's read and control tools over MCP (docs/monitor.md#mcp)."""
    import anyio
    import uvicorn

    from epic_wfms.installation import open_database
    from epic_wfms.monitor.app import build_state, own_bus
    from epic_wfms.monitor.mcp_server import build_mcp

    config = _config(config_path, data_dir, host=host)
    token = (token_file.read_text().strip() if token_file is not None
             else os.environ.get("EPIC_MCP_TOKEN") or None)
    try:
        db = open_database(config)
    except EpicWfmsError as error:
        raise click.ClickException(str(error)) from error
    bus = own_bus(config, db)
    state = build_state(config, db, bus)
    server = build_mcp(state, token if transport == "stdio" else None)
    try:
        if transport == "stdio":
            anyio.run(server.run_stdio_async)
        else:
            click.echo(f"epic-wfms MCP on http://{config.monitor.host}:{port}/mcp", err=True)
            uvicorn.run(server.streamable_http_app(host=config.monitor.host),
                        host=config.monitor.host, port=port, log_level="warning")
    finally:
        state.reads.dispose()
        if bus is not None:
            bus.close()
        db.dispose()
