"""``epic-wfms deadletters list|show|replay|discard``: what no consumer could accept, why, and
putting it right (docs/operations.md#dead-letters)."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from epic_wfms.bus import MessageBus
from epic_wfms.config import load_config
from epic_wfms.errors import EpicWfmsError
from epic_wfms.installation import build_transport, open_database
from epic_wfms.store.deadletters import as_dict, get_letter, open_letters, resolve
from epic_wfms.store.ledger import StoreLedger
from epic_wfms.streaming.replay import replay

CONFIG = click.option("--config", "config_path", type=click.Path(path_type=Path, exists=True),
                      default=None, help="YAML configuration (docs/configuration.md).")
DATA_DIR = click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                        help="Where the store lives (default .epic-wfms).")


def _config(config_path: Path | None, data_dir: Path | None):
    try:
        return load_config(config_path, data_dir=data_dir)
    except EpicWfmsError as error:
        raise click.ClickException(str(error)) from error


@click.group()
def deadletters() -> None:
    """Messages no consumer could accept: list, show, replay or discard them."""


@deadletters.command("list")
@click.option("--run", "run_number", type=int, default=None, help="Only this run's.")
@click.option("--all", "include_resolved", is_flag=True, help="Also replayed/discarded ones.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@CONFIG
@DATA_DIR
def list_letters(run_number: int | None, include_resolved: bool, as_json: bool,
                 config_path: Path | None, data_dir: Path | None) -> None:
    """Open dead letters with their run, type and reason."""
    letters = open_letters(open_database(_config(config_path, data_dir)), run_number,
                           include_resolved)
    if as_json:
        click.echo(json.dumps([as_dict(letter) for letter in letters], indent=1))
        return
    table = Table(title=f"dead letters ({len(letters)})")
    for column in ("id", "run", "msg_type", "subscription", "reason", "resolution"):
        table.add_column(column)
    for letter in letters:
        table.add_row(str(letter.id), str(letter.run_number or "-"), letter.msg_type or "-",
                      letter.subscription, letter.reason, letter.resolution or "")
    Console().print(table)


@deadletters.command()
@click.argument("letter_id", type=int)
@click.option("--body-only", is_flag=True, help="Print the raw body alone (to edit it).")
@CONFIG
@DATA_DIR
def show(letter_id: int, body_only: bool, config_path: Path | None,
         data_dir: Path | None) -> None:
    """One dead letter with its raw body."""
    letter = get_letter(open_database(_config(config_path, data_dir)), letter_id)
    if letter is None:
        raise click.ClickException(f"no dead letter {letter_id} (see: epic-wfms deadletters "
                                   "list --all)")
    click.echo(letter.body if body_only else json.dumps(as_dict(letter, body=True), indent=1))


def _selected(db, ids: tuple[int, ...], run_number: int | None) -> list:
    if not ids and run_number is None:
        raise click.UsageError("name dead letters by id, or all of a run with --run")
    letters = open_letters(db, run_number) if run_number is not None else []
    letters += [letter for i in ids if (letter := get_letter(db, i)) is not None]
    if unknown := set(ids) - {letter.id for letter in letters}:
        raise click.ClickException(f"no dead letter {sorted(unknown)}")
    return letters


@deadletters.command("replay")
@click.argument("ids", type=int, nargs=-1)
@click.option("--run", "run_number", type=int, default=None, help="Every open one of a run.")
@click.option("--body", "body_file", type=click.Path(path_type=Path, exists=True),
              default=None, help="Send this corrected body instead of the stored one.")
@CONFIG
@DATA_DIR
def replay_letters(ids: tuple[int, ...], run_number: int | None, body_file: Path | None,
                   config_path: Path | None, data_dir: Path | None) -> None:
    """Send dead letters again, once their cause is fixed (needs the STOMP bus: the agents
    that consume them run in other processes)."""
    config = _config(config_path, data_dir)
    if config.bus.transport != "stomp":
        raise click.ClickException(
            "replay needs bus.transport: stomp | why: with the in-process bus the consumers "
            "live in the process that runs them | fix: replay from that process "
            "(epic_wfms.streaming.replay.replay) or run the agents over STOMP")
    db = open_database(config)
    letters = _selected(db, ids, run_number)
    bus = MessageBus(build_transport(config, f"deadletters@{getpass.getuser()}"),
                     StoreLedger(db))
    try:
        done = replay(db, bus, letters, getpass.getuser(),
                      body_file.read_text() if body_file else None)
    finally:
        bus.close()
    click.echo(f"replayed {len(done)} dead letter(s): {done}")


@deadletters.command()
@click.argument("ids", type=int, nargs=-1)
@click.option("--run", "run_number", type=int, default=None, help="Every open one of a run.")
@click.option("--reason", required=True, help="Why it is not replayed (kept with it).")
@CONFIG
@DATA_DIR
def discard(ids: tuple[int, ...], run_number: int | None, reason: str,
            config_path: Path | None, data_dir: Path | None) -> None:
    """Resolve dead letters without replaying them (the run may then be finalized)."""
    db = open_database(_config(config_path, data_dir))
    letters = [letter.id for letter in _selected(db, ids, run_number)]
    resolve(db, letters, f"discarded by {getpass.getuser()}: {reason}")
    click.echo(f"discarded {len(letters)} dead letter(s): {letters}")
