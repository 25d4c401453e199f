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
    click.option("--host", envvar="EPIC_IDDS_HOST", required=True,
                 help="iDDS REST URL, e.g. https://idds.example.org:443/idds "
                      "(env EPIC_IDDS_HOST)."),
    click.option("--token-file", envvar="EPIC_IDDS_TOKEN_FILE", required=True,
                 type=click.Path(path_type=Path, exists=True, dir_okay=False),
                 help="File holding the OIDC ID token (env EPIC_IDDS_TOKEN_FILE)."),
    click.option("--vo", default="epic", show_default=True, help="The token's VO."),
]


def _server_options(fn):
    for option in reversed(_SERVER_OPTIONS):
        fn = option(fn)
    return fn


def _connect(host: str, token_file: Path, vo: str):
    from epic_wfms.wfms.idds.client import IddsConnection, IddsSettings

    return IddsConnection(IddsSettings(host, token_file.read_text().strip(), vo=vo))


@click.group()
def idds() -> None:
    """iDDS requests: submit a workflow, read its status, transforms and PanDA task ids."""


@idds.command()
@click.argument("workflow_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@_server_options
def submit(workflow_file: Path, host: str, token_file: Path, vo: str) -> None:
    """Submit WORKFLOW_FILE: iDDS's JSON of a workflow, or `template render --target idds
    --json` output (its "workflow"). Prints iDDS's request id."""
    text = workflow_file.read_text()
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{workflow_file} is not JSON: {exc}") from exc
    if isinstance(document, dict) and isinstance(document.get("workflow"), str):
        text = document["workflow"]
    from epic_wfms.wfms.idds.submit import deserialise

    try:
        workflow = deserialise(text)
        request_id = _connect(host, token_file, vo).submit(workflow)
    except EpicWfmsError as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:  # idds-workflow refuses what is not one of its objects
        raise click.ClickException(f"{workflow_file} is not an iDDS workflow: {exc}") from exc
    click.echo(request_id)


@idds.command()
@click.argument("request_id", type=int)
@_server_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(request_id: int, host: str, token_file: Path, vo: str, as_json: bool) -> None:
    """A request's status and owner, its transforms and processings (workload id = PanDA's
    jediTaskID once iDDS submitted the work's task)."""
    try:
        conn = _connect(host, token_file, vo)
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
