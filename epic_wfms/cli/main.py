"""The ``epic-wfms`` command."""

from __future__ import annotations

import importlib
import json
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import click
from rich.console import Console
from rich.table import Table

from epic_wfms import __version__
from epic_wfms.cli.agents import AGENT_ROLES, run_agent, run_daq_agent
from epic_wfms.cli.deadletters import deadletters
from epic_wfms.cli.demo import DemoOptions, run_demo
from epic_wfms.cli.idds import idds
from epic_wfms.cli.mcp import mcp
from epic_wfms.cli.monitor import monitor
from epic_wfms.cli.panda import panda
from epic_wfms.cli.sim import sim
from epic_wfms.cli.sites import sites
from epic_wfms.cli.status import store_status
from epic_wfms.cli.template import template_cli
from epic_wfms.config import Config, load_config
from epic_wfms.errors import EpicWfmsError
from epic_wfms.installation import open_database
from epic_wfms.lifecycle.docs import lifecycles_markdown
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
@click.version_option(__version__, "-V", "--version", prog_name="epic-wfms",
                      message="%(prog)s %(version)s")
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
@click.option("--anomaly", "anomalies", multiple=True, metavar="SEQ:TF",
              help="Embedded: saturate TF of STF SEQ to see the fast path raise an alarm.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object only.")
@click.option("--monitor", "with_monitor", is_flag=True,
              help="Serve the web monitor while the run goes (its URL is printed).")
@click.option("--monitor-port", type=int, default=None, help="Port of --monitor (default free).")
@click.option("--backend", type=click.Choice(["embedded", "services"]), default="embedded",
              show_default=True,
              help="embedded: one process, SQLite, in-process bus; services: agents as "
                   "processes through the STOMP broker and PostgreSQL.")
@click.option("--ddm", type=click.Choice(["embedded", "rucio"]), default=None,
              help="DDM backend (default: the configuration's ddm.backend); rucio without a "
                   "configured server starts a private one (docs/rucio.md).")
@click.option("--wfms", type=click.Choice(["embedded", "panda"]), default="embedded",
              show_default=True,
              help="panda: the run's processing is done by PanDA/JEDI and pilots: the "
                   "configured PanDA server (wfms.backend: panda), else the loopback stack "
                   "(Rucio, PanDA, JEDI, Harvester; docs/panda-idds.md).")
@click.option("--scale", default=None, metavar="ROLE=N,...",
              help="services: run N instances of a role (archive, process, merge), e.g. "
                   "process=2,merge=2.")
@CONFIG_OPTION
@DATA_DIR_OPTION
def demo(stfs: int, rate_hz: float, stf_size: int, standby: str | None,
         anomalies: tuple[str, ...], as_json: bool, with_monitor: bool,
         monitor_port: int | None, backend: str, ddm: str | None, wfms: str,
         scale: str | None, config_path: Path | None, data_dir: Path | None) -> None:
    """Run one ePIC streaming run end to end."""
    try:
        config = load_config(config_path, data_dir=data_dir)
        options = DemoOptions(stfs=stfs, rate_hz=rate_hz, stf_size_bytes=stf_size,
                              standby=_parse_range(standby),
                              anomalous_tfs=_parse_anomalies(anomalies), monitor=with_monitor,
                              monitor_port=monitor_port, scale=_parse_scale(scale, backend))
        console = None if as_json else Console()
        with servers_for_demo(config, ddm, wfms, console) as (config, panda_summary):
            report = run_demo(config, options, console, backend)
            run_config = config.model_copy(update={"database_url": report["store"]})
            report.update(ddm_summary(run_config, report["run_number"]))
            if panda_summary is not None:
                from epic_wfms.installation import build_panda_connection
                from epic_wfms.wfms.panda.report import settle_tasks

                db = open_database(run_config)
                try:
                    settled = settle_tasks(build_panda_connection(run_config), db,
                                           report["run_number"], timeout_s=600)
                    report["panda"] = {**panda_summary(db, report["run_number"]),
                                       "tasks_ended": settled}
                finally:
                    db.dispose()
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


@contextmanager
def servers_for_demo(config: Config, ddm: str | None, wfms: str, console: Console | None):
    """The configuration the demo runs with, and what reports the run on PanDA (None on the
    embedded WFMS). ``--wfms panda`` with a configured PanDA server uses it (and the
    configured Rucio); without one, the loopback harness starts Rucio and the PanDA stack."""
    if wfms != "panda":
        with ddm_for_demo(config, ddm, console) as config:
            yield config, None
        return
    if config.wfms.backend == "panda":  # a configured PanDA (and Rucio): production's code
        from epic_wfms.wfms.panda.report import run_on_panda

        with ddm_for_demo(config, "rucio", console) as config:
            yield config, run_on_panda
        return
    if ddm == "embedded":
        raise click.UsageError("--wfms panda needs Rucio: JEDI reads the run's STFs from "
                               "Rucio datasets (leave out --ddm, or give --ddm rucio)")
    panda_demo = harness("loopback.panda.demo", "wfms.panda").panda_demo
    with panda_demo(config, console.print if console else lambda *_: None) as served:
        yield served


@contextmanager
def ddm_for_demo(config: Config, ddm: str | None, console: Console | None):
    if ddm == "rucio" or (ddm is None and config.ddm.backend == "rucio"):
        rucio = config.ddm.rucio
        if rucio.username or rucio.auth_type != "userpass":  # a configured server
            yield config.model_copy(update={"ddm": config.ddm.model_copy(update={
                "backend": "rucio"})})
            return
        rucio_ddm = harness("loopback.rucio.demo", "ddm.rucio").rucio_ddm
        with rucio_ddm(config, console.print if console else lambda *_: None) as rucio_config:
            yield rucio_config
    elif ddm == "embedded":
        yield config.model_copy(update={"ddm": config.ddm.model_copy(update={
            "backend": "embedded"})})
    else:
        yield config


def harness(module: str, section: str) -> ModuleType:
    """A starter of the loopback harness (``loopback/``, a checkout's, not the product's)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name != "loopback" and not (error.name or "").startswith("loopback."):
            raise
        raise EpicWfmsError(
            f"this demo starts its own servers, which needs the loopback harness ({module})",
            "the harness is part of a checkout of epic-wfms, not of the installed package",
            f"configure the servers to use in {section} (docs/configuration.md), or run from a "
            "checkout after `make test` (pip install -e ./loopback)") from error


def ddm_summary(config: Config, run_number: int) -> dict:
    """The run's data as the DDM holds it, checked against the store (reconciliation)."""
    from epic_wfms.ddm.reconcile import run_data_summary
    from epic_wfms.installation import build_ddm

    db = open_database(config)
    try:
        summary = run_data_summary(db, build_ddm(config, db), config, run_number)
        return {"ddm": config.ddm.backend, **summary}
    finally:
        db.dispose()


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


SCALABLE_ROLES = ("archive", "process", "merge")


def _parse_scale(text: str | None, backend: str) -> dict[str, int]:
    if not text:
        return {}
    if backend != "services":
        raise click.BadParameter("--scale needs --backend services (agents as processes)")
    scale = {}
    for item in text.split(","):
        role, _, count = item.partition("=")
        if role.strip() not in SCALABLE_ROLES or not count.strip().isdigit() or not (
                1 <= int(count) <= 8):
            raise click.BadParameter(
                f"{item!r}: use ROLE=N with ROLE one of {', '.join(SCALABLE_ROLES)} and "
                "1 <= N <= 8 (ingest, fastpath and monitor run one instance)")
        scale[role.strip()] = int(count)
    return scale


def _parse_anomalies(texts: tuple[str, ...]) -> dict[int, set[int]]:
    anomalies: dict[int, set[int]] = {}
    for text in texts:
        try:
            sequence, tf = (int(p) for p in text.split(":"))
        except ValueError:
            raise click.BadParameter(f"{text!r} is not SEQ:TF, e.g. 5:1", param_hint="--anomaly"
                                     ) from None
        anomalies.setdefault(sequence, set()).add(tf)
    return anomalies


def _print_report(console: Console, report: dict) -> None:
    table = Table(title=f"run {report['run_number']}: {report['run_status']}", show_header=False)
    for key in ("stfs_produced", "stfs_registered", "stfs_archived", "stfs_processed",
                "stfs_merged", "lost", "merges", "merged_output", "outside_run_stfs"):
        table.add_row(key, str(report[key]))
    lat = report["latency_s"]
    table.add_row("latency available->dispatched", f"p50 {lat['p50']} s, p99 {lat['p99']} s")
    if "slices" in report:  # the fast path ran alongside (docs/fastpath.md)
        sl, fl = report["slices"], report["slice_latency_s"]
        table.add_row("fast-path slices", f"done {sl['done']}, failed {sl['failed']}, "
                                          f"retried {sl['retried']} (of {sl['total']})")
        table.add_row("latency TF available->slice result", f"p50 {fl['p50']} s, p99 {fl['p99']} s")
        table.add_row("fast-path alarms", str(report["alarms"]))
    table.add_row("jobs", ", ".join(f"{k}={v}" for k, v in sorted(report["jobs"].items())))
    table.add_row("integrity issues", json.dumps(report["integrity_issues"]))
    table.add_row("dead letters", "\n".join(report["dead_letter_reasons"]) or "0")
    for reason in report["shortfall"]:
        table.add_row("not a success", reason)
    table.add_row("data (" + report.get("ddm", "ddm") + ")", ", ".join(
        f"{k.removeprefix('ddm_')}={v}" for k, v in report.items() if k.startswith("ddm_")))
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
    schema = info["schema"]
    console.print(f"epic-wfms {info['version']}, store schema {schema['current']}"
                  + ("" if schema["current"] == schema["head"] else
                     f" (this version's schema: {schema['head']})"))
    console.print(f"detector state: [bold]{info['detector_state']}[/bold]")
    runs = Table(title="runs")
    for column in ("run", "type", "status", "stfs", "merged_output", "start", "end"):
        runs.add_column(column)
    runs.add_column("dead letters")
    for run in info["runs"]:
        runs.add_row(*(str(run[c]) for c in ("run", "type", "status", "stfs", "merged_output",
                                             "start", "end", "dead_letters")))
    console.print(runs)
    for run in info["runs"]:
        for reason in run["short"]:
            console.print(f"[bold red]run {run['run']} {run['status']}[/bold red]: {reason}")
    if info["open_dead_letters"]["total"]:
        console.print(f"[bold red]open dead letters: {info['open_dead_letters']}[/bold red] "
                      "(epic-wfms deadletters list)")
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
    """Run one component (daq, ingest, archive, process, merge, fastpath, monitor) as its own
    process."""
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


@cli.command()
def lifecycles() -> None:
    """Print the record lifecycles: states, allowed moves, groups (docs/lifecycles.md)."""
    click.echo(lifecycles_markdown(), nl=False)


cli.add_command(monitor)
cli.add_command(mcp)
cli.add_command(sites)
cli.add_command(sim)
cli.add_command(template_cli)
cli.add_command(panda)
cli.add_command(idds)
cli.add_command(deadletters)


if __name__ == "__main__":
    cli()
