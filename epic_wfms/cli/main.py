"""The ``epic-wfms`` command."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from epic_wfms.backends import open_database
from epic_wfms.cli.agents import AGENT_ROLES, run_agent, run_daq_agent
from epic_wfms.cli.demo import DemoOptions, run_demo
from epic_wfms.cli.panda import panda
from epic_wfms.cli.status import store_status
from epic_wfms.config import Config, load_config
from epic_wfms.errors import EpicWfmsError
from epic_wfms.statemachine.docs import transition_table_markdown

CONFIG_OPTION = click.option(
    "--config", "config_path", type=click.Path(path_type=Path, exists=True), default=None,
    help="YAML configuration (docs/configuration.md); env EPIC_WFMS_* overrides it.",
)
DATA_DIR_OPTION = click.option(
    "--data-dir", type=click.Path(path_type=Path), default=None,
    help="Where the store and the local RSEs live (default .epic-wfms).",
)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what the components do.")
def cli(verbose: bool) -> None:
    """epic-wfms: ePIC workflow management on top of PanDA, iDDS, Rucio and Harvester."""
    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR,
                        format="%(asctime)s %(threadName)s %(name)s: %(message)s")


@cli.command()
@click.option("--stfs", default=50, show_default=True, help="STFs in the physics run.")
@click.option("--rate", "rate_hz", default=5.0, show_default=True, help="DAQ rate in STF/s.")
@click.option("--stf-size", default=64 * 1024, show_default=True, help="STF size in bytes.")
@click.option("--standby", default=None, metavar="FROM:TO",
              help="Pause the run (standby) for STF sequences FROM..TO-1 to see gating.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object only.")
@click.option("--backend", type=click.Choice(["embedded", "services"]), default="embedded",
              show_default=True,
              help="embedded: one process, SQLite, in-process bus; services: agents as "
                   "processes through the STOMP broker and PostgreSQL.")
@click.option("--wfms", type=click.Choice(["embedded", "panda"]), default="embedded",
              show_default=True,
              help="panda: also submit the run's processing to a local PanDA server "
                   "(docs/panda-idds.md).")
@CONFIG_OPTION
@DATA_DIR_OPTION
def demo(stfs: int, rate_hz: float, stf_size: int, standby: str | None, as_json: bool,
         backend: str, wfms: str, config_path: Path | None, data_dir: Path | None) -> None:
    """Run one ePIC streaming run end to end."""
    try:
        config = load_config(config_path, data_dir=data_dir)
        options = DemoOptions(stfs=stfs, rate_hz=rate_hz, stf_size_bytes=stf_size,
                              standby=_parse_range(standby))
        console = None if as_json else Console()
        report = run_demo(config, options, console, backend)
        if wfms == "panda":
            from epic_wfms.wfms.panda.demo import submit_run_to_panda

            report["panda"] = submit_run_to_panda(
                open_database(config), report["run_number"], config.data_dir / "panda")
    except EpicWfmsError as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        click.echo(json.dumps(report))
    else:
        _print_report(Console(), report)
        if "panda" in report:
            Console().print(f"PanDA: {json.dumps(report['panda'])}  (epic-wfms panda tasks)")
    if not report["finished"] or report["lost"]:
        sys.exit(1)


def _load(config_path: Path | None, data_dir: Path | None) -> Config:
    """Configuration errors end the command with their message, not a traceback."""
    try:
        return load_config(config_path, data_dir=data_dir)
    except EpicWfmsError as error:
        raise click.ClickException(str(error)) from error


def _parse_range(text: str | None) -> range | None:
    if not text:
        return None
    try:
        start, stop = (int(p) for p in text.split(":"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not FROM:TO, e.g. 10:20") from None
    if not 0 <= start < stop:
        raise click.BadParameter(f"{text!r}: need 0 <= FROM < TO")
    return range(start, stop)


def _print_report(console: Console, report: dict) -> None:
    table = Table(title=f"run {report['run_number']}: {report['run_status']}", show_header=False)
    for key in ("stfs_produced", "stfs_registered", "stfs_archived", "stfs_processed",
                "stfs_merged", "lost", "merges", "merged_output", "outside_run_stfs"):
        table.add_row(key, str(report[key]))
    lat = report["latency_s"]
    table.add_row("latency available->dispatched", f"p50 {lat['p50']} s, p99 {lat['p99']} s")
    table.add_row("jobs", ", ".join(f"{k}={v}" for k, v in sorted(report["jobs"].items())))
    table.add_row("integrity issues", json.dumps(report["integrity_issues"]))
    table.add_row("wall time", f"{report['wall_time_s']} s ({report['backend']} backend)")
    console.print(table)
    console.print(f"store: {report['store']}  (inspect with: epic-wfms status)")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@CONFIG_OPTION
@DATA_DIR_OPTION
def status(as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """Show runs, STFs, jobs and open integrity issues from the bookkeeping store."""
    config = _load(config_path, data_dir)
    info = store_status(open_database(config))
    if as_json:
        click.echo(json.dumps(info, indent=1))
        return
    console = Console()
    console.print(f"detector state: [bold]{info['detector_state']}[/bold]")
    runs = Table(title="runs")
    for column in ("run", "type", "status", "stfs", "merged_output", "start", "end"):
        runs.add_column(column)
    for run in info["runs"]:
        runs.add_row(*(str(run[c]) for c in ("run", "type", "status", "stfs", "merged_output",
                                             "start", "end")))
    console.print(runs)
    for key in ("stf_processing", "stf_archive", "jobs", "open_integrity_issues"):
        console.print(f"{key}: {info[key]}")
    console.print(f"STFs streamed outside runs: {info['outside_run_stfs']}")
    for agent_info in info["agents"]:
        console.print(f"agent {agent_info['name']} ({agent_info['role']}): "
                      f"{agent_info['status']}, heartbeat {agent_info['heartbeat_age_s']} s ago")


@cli.command()
@click.argument("role", type=click.Choice(AGENT_ROLES))
@click.option("--run", "run_number", type=int, help="daq: run number to play.")
@click.option("--stfs", default=50, show_default=True, help="daq: STFs in the run.")
@click.option("--rate", "rate_hz", default=5.0, show_default=True, help="daq: STF/s.")
@click.option("--stf-size", default=64 * 1024, show_default=True, help="daq: STF bytes.")
@click.option("--standby", default=None, metavar="FROM:TO", help="daq: standby period.")
@CONFIG_OPTION
@DATA_DIR_OPTION
def agent(role: str, run_number: int | None, stfs: int, rate_hz: float, stf_size: int,
          standby: str | None, config_path: Path | None, data_dir: Path | None) -> None:
    """Run one component (daq, ingest, archive, process, merge, monitor) as its own process."""
    logging.getLogger().setLevel(logging.INFO)
    config = _load(config_path, data_dir)
    if role != "daq":
        run_agent(role, config)
        return
    if run_number is None:
        raise click.UsageError("the daq agent needs --run")
    run_daq_agent(config, run_number, stfs, rate_hz, stf_size, _parse_range(standby))


@cli.command()
def statemachine() -> None:
    """Print the complete detector/DAQ transition table (Markdown)."""
    click.echo(transition_table_markdown())


cli.add_command(panda)

if __name__ == "__main__":
    cli()
