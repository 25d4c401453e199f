"""``epic-wfms panda``: PanDA tasks and jobs as recorded in our store, with PanDA's ids."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from epic_wfms.config import load_config
from epic_wfms.store.database import Database
from epic_wfms.store.schema import PandaJobRecord, PandaTaskRecord


def _db(db_url: str | None, config_path: Path | None, data_dir: Path | None) -> Database:
    database = Database(db_url or load_config(config_path, data_dir=data_dir).db_url)
    database.create_schema()
    return database


_STORE_OPTIONS = [
    click.option("--db", "db_url", default=None, help="Store URL (default: from the config)."),
    click.option("--config", "config_path", type=click.Path(path_type=Path, exists=True),
                 default=None),
    click.option("--data-dir", type=click.Path(path_type=Path), default=None),
]


def _store_options(fn):
    for option in reversed(_STORE_OPTIONS):
        fn = option(fn)
    return fn


@click.group()
def panda() -> None:
    """PanDA/JEDI tasks and jobs submitted by epic-wfms (ids are PanDA's)."""


@panda.command()
@_store_options
def tasks(db_url: str | None, config_path: Path | None, data_dir: Path | None) -> None:
    """JEDI tasks: jediTaskID, name, kind, run, site, status, priority."""
    table = Table(title="PanDA tasks")
    for column in ("jediTaskID", "task", "kind", "run", "site", "status", "priority", "error"):
        table.add_column(column)
    with _db(db_url, config_path, data_dir).session() as s:
        for t in s.scalars(select(PandaTaskRecord).order_by(PandaTaskRecord.jedi_task_id)):
            table.add_row(str(t.jedi_task_id), t.task_name, t.kind, str(t.run_number or ""),
                          t.site or "", t.status, str(t.priority or ""), t.error or "")
    Console(width=200).print(table)


@panda.command()
@click.argument("jedi_task_id", type=int)
@_store_options
def jobs(jedi_task_id: int, db_url: str | None, config_path: Path | None,
         data_dir: Path | None) -> None:
    """PanDA jobs of one task with the STF each one read."""
    table = Table(title=f"PanDA jobs of task {jedi_task_id}")
    for column in ("PandaID", "status", "site", "attempt", "STF", "error"):
        table.add_column(column)
    with _db(db_url, config_path, data_dir).session() as s:
        query = select(PandaJobRecord).where(PandaJobRecord.jedi_task_id == jedi_task_id)
        for j in s.scalars(query.order_by(PandaJobRecord.panda_id)):
            table.add_row(str(j.panda_id), j.status, j.site or "", str(j.attempt_nr),
                          j.stf_filename or "", j.error or "")
    Console(width=200).print(table)


@panda.command("snakemake", context_settings={"ignore_unknown_options": True,
                                              "allow_extra_args": True})
@click.option("--site", required=True, help="PanDA queue for the jobs (PANDA_SITE).")
@click.option("--vo", default="epic", show_default=True, help="PanDA VO (PANDA_VO).")
@click.option("--config", "config_path", type=click.Path(path_type=Path, exists=True),
              default=None, help="YAML configuration with wfms.panda (docs/configuration.md).")
@click.argument("snakemake_args", nargs=-1, type=click.UNPROCESSED)
def snakemake(site: str, vo: str, config_path: Path | None,
              snakemake_args: tuple[str, ...]) -> None:
    """Run Snakemake with its jobs as PanDA jobs (snakemake-executor-plugin-panda), as the
    identity of wfms.panda. Arguments after -- go to snakemake (docs/snakemake.md)."""
    import os

    from epic_wfms.errors import EpicWfmsError
    from epic_wfms.wfms.panda.snakemake import snakemake_command, snakemake_environment

    try:
        config = load_config(config_path)
        env = snakemake_environment(config.wfms.panda, site, vo,
                                    config_root=config.data_dir / "panda-client")
    except EpicWfmsError as error:
        raise click.ClickException(str(error)) from error
    command = snakemake_command(list(snakemake_args))
    os.execve(command[0], command, env)  # Snakemake itself: its signals, its exit code
