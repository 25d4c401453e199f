"""``epic-wfms sim``: simulations that exercise the real brokerage code."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from epic_wfms.config import load_config
from epic_wfms.errors import EpicWfmsError
from epic_wfms.installation import open_database
from epic_wfms.simulation import FabricSimulation, SimSettings, parse_outage
from epic_wfms.simulation.recorder import StoreRecorder
from epic_wfms.sites import load_catalogue


@click.group()
def sim() -> None:
    """Simulations of the ePIC computing fabric."""


@sim.command()
@click.option("--hours", default=24.0, show_default=True, help="Simulated streaming window.")
@click.option("--campaign", "campaign_fraction", default=0.9, show_default=True,
              help="Campaign size as a fraction of the fabric's spare core-hours in the window.")
@click.option("--stf-rate", default=6000 / 3600, show_default=True, help="STFs per second.")
@click.option("--outage", "outages", multiple=True, metavar="SITE@T0-T1",
              help="Site (E1_BNL@2h-4h) or link (E1_BNL~E1_JLAB@2h-4h) outage; repeatable.")
@click.option("--compare", is_flag=True, help="Also run without the outages and show deltas.")
@click.option("--seed", default=1, show_default=True)
@click.option("--sites", "site_dir", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="Folder of site YAML files.")
@click.option("--record", is_flag=True,
              help="Write decisions and usage to the store (see them with the monitor).")
@click.option("--config", "config_path", type=click.Path(path_type=Path, exists=True),
              default=None, help="YAML configuration (chooses the store for --record).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object only.")
def fabric(hours: float, campaign_fraction: float, stf_rate: float, outages: tuple[str, ...],
           compare: bool, seed: int, site_dir: Path | None, record: bool,
           config_path: Path | None, as_json: bool) -> None:
    """A campaign plus a live streaming run over the whole catalogue, real brokerage."""
    try:
        catalogue = load_catalogue(site_dir)
        settings = SimSettings(hours=hours, seed=seed, campaign_fraction=campaign_fraction,
                               stf_rate_hz=stf_rate, outages=[parse_outage(o) for o in outages])
        recorder = None
        if record:
            recorder = StoreRecorder(open_database(load_config(config_path)),
                                     datetime.now(UTC).replace(microsecond=0))
        report = FabricSimulation(catalogue, settings, recorder).run()
        if recorder is not None:
            report["recorded"] = {"decisions": recorder.decisions, "usage": recorder.usages}
        if compare and outages:
            settings.outages = []
            base = FabricSimulation(catalogue, settings).run()
            report["without_outages"] = {
                "utilisation": base["utilisation"],
                "time_to_complete_h": base["campaign"]["time_to_complete_h"],
                "stf_latency_s": base["streaming"]["latency_s"],
            }
    except EpicWfmsError as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        click.echo(json.dumps(report))
    else:
        _print(Console(), report)
    if report["streaming"]["lost"]:
        raise SystemExit(1)


def _print(console: Console, r: dict) -> None:
    table = Table(title=f"fabric: {r['fabric']['sites']} sites, {r['fabric']['cores']:,} cores; "
                        f"{r['simulated_hours']} h simulated in {r['wall_time_s']} s")
    for column in ("site", "cores", "utilisation", "share deviation", "shares (actual)"):
        table.add_column(column)
    for name, site in r["sites"].items():
        table.add_row(name, f"{site['cores']:,}", f"{site['utilisation']:.0%}",
                      f"{site['share_deviation']:.2f}",
                      ", ".join(f"{k} {v:.0%}" for k, v in site["share_actual"].items() if v))
    console.print(table)
    c, s = r["campaign"], r["streaming"]
    console.print(f"utilisation {r['utilisation']:.0%}; share deviation (mean) "
                  f"{r['share_deviation_mean']:.2f}")
    console.print(f"campaign: {c['done']}/{c['jobs']} jobs, complete after "
                  f"{c['time_to_complete_h']} h; {c['failures_retried']} failures retried, "
                  f"{c['moved_by_outages']} moved by outages")
    console.print(f"campaign classes complete after (h): {c['class_complete_h']}")
    console.print(f"streaming: {s['stfs_processed']}/{s['stfs_produced']} STFs processed, "
                  f"lost {s['lost']}, by site {s['by_site']}, latency {s['latency_s']}")
    for outage in r["outages"]:
        console.print(f"outage {outage['target']} {outage['start_h']}-{outage['end_h']} h: "
                      f"STFs by site at start {outage['stfs_by_site_at_start']}, at end "
                      f"{outage.get('stfs_by_site_at_end')}")
    if "without_outages" in r:
        console.print(f"without outages: {r['without_outages']}")
    b = r["brokerage"]
    console.print(f"brokerage: {b['decisions']} decisions at {b['decisions_per_s']}/s")
