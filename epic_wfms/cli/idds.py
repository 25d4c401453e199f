"""``epic-wfms idds``: submit an iDDS workflow and read a request back (ids are iDDS's)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from epic_wfms.errors import EpicWfmsError

# idds-common configures root logging to stdout when imported: only inside the commands, so
# that other commands' --json output stays clean

_SERVER_OPTIONS = [
    click.option("--host", envvar="EPIC_IDDS_HOST", default=None,
                 help="iDDS REST URL, e.g. https://idds.example.org:443/idds "
                      "(env EPIC_IDDS_HOST; default: wfms.idds.host of --config)."),
    click.option("--token-file", envvar="EPIC_IDDS_TOKEN_FILE", default=None,
                 type=click.Path(path_type=Path, exists=True, dir_okay=False),
                 help="File holding the OIDC ID token (env EPIC_IDDS_TOKEN_FILE; default: "
                      "wfms.idds.token_file of --config)."),
    click.option("--vo", default=None, help="The token's VO (default: wfms.idds.vo, epic)."),
    click.option("--config", "config_path", default=None,
                 type=click.Path(path_type=Path, exists=True, dir_okay=False),
                 help="Installation configuration whose wfms.idds names the server."),
]


def _server_options(fn):
    for option in reversed(_SERVER_OPTIONS):
        fn = option(fn)
    return fn


def _connect(host: str | None, token_file: Path | None, vo: str | None,
             config_path: Path | None):
    """The iDDS server: options (or their EPIC_IDDS_* variables) over the configuration's
    ``wfms.idds``."""
    from epic_wfms.config import IddsConfig, load_config
    from epic_wfms.wfms.idds.client import IddsConnection, IddsSettings

    configured = IddsConfig()
    if config_path is not None or not (host and token_file):
        configured = load_config(config_path).wfms.idds
    host, token_file = host or configured.host, token_file or configured.token_file
    if not host or not token_file:
        raise click.UsageError(
            "no iDDS server: give --host and --token-file (or EPIC_IDDS_HOST and "
            "EPIC_IDDS_TOKEN_FILE), or --config with wfms.idds {host, token_file}")
    try:
        token = Path(token_file).read_text().strip()
    except OSError as exc:
        raise click.ClickException(f"cannot read the iDDS token {token_file}: {exc}; write "
                                   "the OIDC ID token there") from exc
    return IddsConnection(IddsSettings(host, token, vo=vo or configured.vo))


@click.group()
def idds() -> None:
    """iDDS requests: submit a workflow, read its status, transforms and PanDA task ids."""


@idds.command()
@click.argument("workflow_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@_server_options
def submit(workflow_file: Path, host: str | None, token_file: Path | None, vo: str | None,
           config_path: Path | None) -> None:
    """Submit WORKFLOW_FILE: iDDS's JSON of a workflow, or `template render --target idds
    --json` output (its "workflow"). Prints iDDS's request id."""
    text = workflow_file.read_text()
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{workflow_file} is not JSON: {exc}") from exc
    if isinstance(document, dict) and document.get("unsupported"):
        raise click.ClickException(f"{workflow_file}: iDDS cannot run this workflow: "
                                   f"{document['unsupported']}")
    if isinstance(document, dict) and isinstance(document.get("workflow"), str):
        text = document["workflow"]
    from epic_wfms.wfms.idds.submit import deserialise

    try:
        connection = _connect(host, token_file, vo, config_path)
    except EpicWfmsError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        workflow = deserialise(text)
        request_id = connection.submit(workflow)
    except EpicWfmsError as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:  # idds-workflow refuses what is not one of its objects
        raise click.ClickException(f"{workflow_file} is not an iDDS workflow: {exc}") from exc
    click.echo(request_id)


@idds.command()
@click.argument("request_id", type=int)
@_server_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(request_id: int, host: str | None, token_file: Path | None, vo: str | None,
           config_path: Path | None, as_json: bool) -> None:
    """A request's status and owner, its transforms and processings (workload id = PanDA's
    jediTaskID once iDDS submitted the work's task)."""
    try:
        conn = _connect(host, token_file, vo, config_path)
        request = conn.request(request_id, with_workflow=False)
        transforms = conn.transforms(request_id)
    except EpicWfmsError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({
            "request_id": request.request_id, "name": request.name, "status": request.status,
            "username": request.username,
            "transforms": [vars(t) for t in transforms]}))
        return
    table = Table(title=f"iDDS request {request.request_id} {request.name}: {request.status} "
                        f"(owner {request.username})")
    for column in ("transform", "work", "status", "processing", "processing status",
                   "workload id"):
        table.add_column(column)
    for t in transforms:
        table.add_row(str(t.transform_id), t.name or "", t.status or "",
                      str(t.processing_id or ""), t.processing_status or "",
                      str(t.workload_id or ""))
    Console(width=200).print(table)
