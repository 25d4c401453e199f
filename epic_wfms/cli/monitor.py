"""``epic-wfms monitor``: serve the web monitor and REST API; mint local tokens; export."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from epic_wfms.config import Config, load_config
from epic_wfms.errors import EpicWfmsError
from epic_wfms.monitor.auth import ROLES, issue_token

CONFIG = click.option("--config", "config_path", type=click.Path(path_type=Path, exists=True),
                      default=None, help="YAML configuration; env EPIC_WFMS_* overrides it.")
DATA_DIR = click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                        help="Where the store lives (default .epic-wfms).")


def _config(config_path: Path | None, data_dir: Path | None, **monitor: object) -> Config:
    try:
        config = load_config(config_path, data_dir=data_dir)
        updates = {k: v for k, v in monitor.items() if v is not None}
        return config.model_copy(update={"monitor": config.monitor.model_copy(update=updates)})
    except EpicWfmsError as error:
        raise click.ClickException(str(error)) from error


@click.group(invoke_without_command=True)
@click.option("--host", default=None, help="Address to listen on (monitor.host).")
@click.option("--port", type=int, default=None, help="Port (monitor.port, default 8470).")
@CONFIG
@DATA_DIR
@click.pass_context
def monitor(ctx: click.Context, host: str | None, port: int | None, config_path: Path | None,
            data_dir: Path | None) -> None:
    """Serve the web monitor and REST API (/api/v1) of the bookkeeping store."""
    if ctx.invoked_subcommand is not None:
        return
    from epic_wfms.monitor.server import serve
    config = _config(config_path, data_dir, host=host, port=port)
    click.echo(f"epic-wfms monitor on http://{config.monitor.host}:{config.monitor.port}/ "
               f"(API docs /api/v1/docs)", err=True)
    serve(config)


@monitor.command()
@click.option("--user", "username", required=True, help="Subject (user name) of the token.")
@click.option("--role", "roles", multiple=True, type=click.Choice(ROLES), required=True,
              help="Role(s) granted; repeat for several.")
@click.option("--ttl", default=3600.0, show_default=True, help="Lifetime in seconds.")
@CONFIG
@DATA_DIR
def token(username: str, roles: tuple[str, ...], ttl: float, config_path: Path | None,
          data_dir: Path | None) -> None:
    """Print a bearer token signed by the local issuer (tests, demo, small installations)."""
    click.echo(issue_token(_config(config_path, data_dir), username, list(roles), ttl))


@monitor.command()
@click.option("--kind", type=click.Choice(["runs", "stfs", "jobs", "transitions", "issues"]),
              default="stfs", show_default=True)
@click.option("--run", "run_number", type=int, default=None, help="Only this run.")
@click.option("--index-prefix", default="epic-wfms", show_default=True)
@CONFIG
@DATA_DIR
def export(kind: str, run_number: int | None, index_prefix: str, config_path: Path | None,
           data_dir: Path | None) -> None:
    """Write records as OpenSearch bulk NDJSON to stdout (curl -XPOST _bulk --data-binary @-)."""
    from epic_wfms.monitor.exports import bulk_ndjson
    from epic_wfms.monitor.readstore import ReadStore
    reads = ReadStore(_config(config_path, data_dir).db_url)
    try:
        for line in bulk_ndjson(reads, kind, run_number, index_prefix=index_prefix):
            sys.stdout.write(line)
    finally:
        reads.dispose()
