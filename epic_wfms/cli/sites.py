"""``epic-wfms sites``: the site catalogue and the Harvester deployments generated from it."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from epic_wfms.brokerage.health import OK, HealthPolicy
from epic_wfms.config import Config, load_config
from epic_wfms.errors import EpicWfmsError
from epic_wfms.installation import open_database
from epic_wfms.sites import Catalogue, load_catalogue
from epic_wfms.sites.catalogue import check_against_config
from epic_wfms.sites.harvester import stale_files, validate_queueconfig, write_configs
from epic_wfms.sites.harvester_cfg import merge_cfg
from epic_wfms.sites.harvester_workers import ALIVE, per_queue, read_workers
from epic_wfms.store.controls import set_site_online
from epic_wfms.streaming.site_view import SiteView

DEFAULT_HARVESTER_DIR = Path("harvester_configs")  # beside where the operator runs it

SITES_OPTION = click.option(
    "--sites", "site_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
    help="Folder of site YAML files (default: the catalogue shipped with epic-wfms).",
)


def _catalogue(site_dir: Path | None) -> Catalogue:
    try:
        return load_catalogue(site_dir)
    except EpicWfmsError as error:
        raise click.ClickException(str(error)) from error


@click.group()
def sites() -> None:
    """ePIC sites: list, show, validate, take offline/online, generate Harvester configs."""


CONFIG_OPTION = click.option(
    "--config", "config_path", type=click.Path(path_type=Path, exists=True), default=None,
    help="YAML configuration (docs/configuration.md): its store holds the sites' status.")
DATA_DIR_OPTION = click.option(
    "--data-dir", type=click.Path(path_type=Path), default=None,
    help="Where the store lives (default .epic-wfms).")


def _config(config_path: Path | None, data_dir: Path | None = None) -> Config:
    try:
        return load_config(config_path, data_dir=data_dir)
    except EpicWfmsError as error:
        raise click.ClickException(str(error)) from error


@sites.command("list")
@SITES_OPTION
@CONFIG_OPTION
@DATA_DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_sites(site_dir: Path | None, config_path: Path | None, data_dir: Path | None,
               as_json: bool) -> None:
    """One line per site: echelon, kind, pledged, cores, queues, RSEs, and its status for
    streaming (ok, offline by an operator, avoided for job failures, probing) as the store
    says; no store yet: every site online."""
    config = _config(config_path, data_dir)
    catalogue = _catalogue(site_dir or config.site_catalogue)
    statuses = site_statuses(config, catalogue)
    rows = [{"site": s.name, "echelon": s.echelon, "kind": s.kind, "pledged": s.pledged,
             "cores": s.cores, "queues": [q.name for q in s.queues],
             "rses": [r.rse for r in s.storage], **statuses.get(s.name, {"status": OK})}
            for s in catalogue]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    table = Table(title=f"{len(rows)} sites, {catalogue.cores:,} cores")
    for column in ("site", "echelon", "kind", "pledged", "cores", "queues", "rses", "status"):
        table.add_column(column)
    for row in rows:
        status = row["status"] + (f": {row['reason']}" if row.get("reason") else "")
        table.add_row(row["site"], row["echelon"], row["kind"], str(row["pledged"]),
                      f"{row['cores']:,}", ", ".join(row["queues"]), ", ".join(row["rses"]),
                      status)
    Console().print(table)


def site_statuses(config: Config, catalogue: Catalogue) -> dict[str, dict[str, str]]:
    """Each site's status for streaming from the store (none without a store yet)."""
    if config.db_url.startswith("sqlite:///") and not Path(
            config.db_url.removeprefix("sqlite:///")).exists():
        return {}
    db = open_database(config)
    try:
        view = SiteView(db, catalogue, HealthPolicy(**config.decision_box.health.model_dump()))
        now = view.refresh()
        out = {}
        for site in catalogue.sites:
            status, why = view.status(site, now)
            out[site] = {"status": status, **({"reason": why} if why else {})}
            if site in view.offline:
                off = view.offline[site]
                out[site].update(by=off.by, since=off.since.isoformat(timespec="seconds"))
        return out
    finally:
        db.dispose()


@sites.command()
@click.argument("site")
@click.option("--reason", required=True, help="Why (kept with the command, shown in the "
              "site list, the monitor and every routing decision while it lasts).")
@SITES_OPTION
@CONFIG_OPTION
@DATA_DIR_OPTION
def offline(site: str, reason: str, site_dir: Path | None, config_path: Path | None,
            data_dir: Path | None) -> None:
    """Take SITE offline: it gets no new STFs, its backlog goes to the other E1s."""
    _set_online(site, False, reason, site_dir, config_path, data_dir)


@sites.command()
@click.argument("site")
@click.option("--reason", default="back online", show_default=True, help="Why.")
@SITES_OPTION
@CONFIG_OPTION
@DATA_DIR_OPTION
def online(site: str, reason: str, site_dir: Path | None, config_path: Path | None,
           data_dir: Path | None) -> None:
    """Bring SITE back online: it gets its share of the STFs again."""
    _set_online(site, True, reason, site_dir, config_path, data_dir)


def _set_online(site: str, online: bool, reason: str, site_dir: Path | None,
                config_path: Path | None, data_dir: Path | None) -> None:
    config = _config(config_path, data_dir)
    catalogue = _catalogue(site_dir or config.site_catalogue)
    try:
        catalogue.site(site)
    except EpicWfmsError as error:
        raise click.ClickException(str(error)) from error
    db = open_database(config)
    try:
        command = set_site_online(db, site, online, reason, getpass.getuser(), role="cli")
    finally:
        db.dispose()
    effect = ("gets its share of new STFs again" if online else
              "gets no new STFs; its queued and deferred STFs go to the other E1s")
    click.echo(f"{site} {command.result}: {effect} (command {command.id})")


@sites.command()
@click.argument("site")
@SITES_OPTION
def show(site: str, site_dir: Path | None) -> None:
    """Everything the catalogue knows about SITE (as JSON)."""
    catalogue = _catalogue(site_dir)
    try:
        found = catalogue.site(site)
    except EpicWfmsError as error:
        raise click.ClickException(str(error)) from error
    click.echo(json.dumps(found.model_dump(), indent=1))


@sites.command()
@SITES_OPTION
@click.option("--harvester-dir", type=click.Path(path_type=Path, file_okay=False),
              default=DEFAULT_HARVESTER_DIR, show_default=True)
@click.option("--config", "config_path", type=click.Path(path_type=Path, exists=True),
              default=None, help="YAML configuration whose E1 sites/RSEs must be in the catalogue.")
def validate(site_dir: Path | None, harvester_dir: Path, config_path: Path | None) -> None:
    """Validate the catalogue, its agreement with the configuration, and the Harvester files."""
    config = _config(config_path)
    catalogue = _catalogue(site_dir or config.site_catalogue)
    problems = check_against_config(catalogue, config.sites, config.wfms.panda.queues)
    for stale in stale_files(catalogue, harvester_dir):
        problems.append(f"{harvester_dir / stale} is stale: run `epic-wfms sites "
                        "harvester-config`")
    for path in sorted(Path(harvester_dir).glob("*/panda_queueconfig.json")):
        problems += [f"{path}: {p}" for p in validate_queueconfig(json.loads(path.read_text()))]
    if problems:
        raise click.ClickException("\n".join(problems))
    click.echo(f"ok: {len(catalogue.sites)} sites, {catalogue.cores:,} cores, "
               f"{sum(1 for _ in catalogue.queues())} queues; Harvester configs current")


@sites.command("harvester-config")
@click.argument("site", required=False)
@SITES_OPTION
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              default=DEFAULT_HARVESTER_DIR, show_default=True)
@click.option("--check", is_flag=True, help="Only report stale files; exit 1 if any.")
@click.option("--merge-into", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, help="A panda_harvester.cfg (yours, or Harvester's template) to "
              "merge SITE's generated fragment into, in place.")
def harvester_config(site: str | None, site_dir: Path | None, out: Path, check: bool,
                     merge_into: Path | None) -> None:
    """Generate <out>/<SITE>/panda_queueconfig.json and panda_harvester.cfg (all sites or SITE)."""
    catalogue = _catalogue(site_dir)
    if site:
        try:
            catalogue.site(site)
        except EpicWfmsError as error:
            raise click.ClickException(str(error)) from error
    if merge_into is not None:
        if not site:
            raise click.ClickException("--merge-into needs the SITE whose fragment to merge")
        fragment = (out / site / "panda_harvester.cfg")
        if site + "/panda_harvester.cfg" in stale_files(catalogue, out) or not fragment.exists():
            raise click.ClickException(f"{fragment} is missing or stale: run `epic-wfms sites "
                                       f"harvester-config {site}` first")
        try:
            merged = merge_cfg(merge_into.read_text(), fragment.read_text(),
                               base_name=str(merge_into))
        except EpicWfmsError as error:
            raise click.ClickException(str(error)) from error
        merge_into.write_text(merged)
        click.echo(f"merged {fragment} into {merge_into}")
        return
    if check:
        stale = [s for s in stale_files(catalogue, out) if not site or s.startswith(site + "/")]
        if stale:
            raise click.ClickException("stale: " + ", ".join(stale))
        click.echo("Harvester configs are current")
        return
    for path in write_configs(catalogue, out, [site] if site else None):
        click.echo(str(path))


@sites.command()
@click.option("--harvester-db", "location", required=True,
              help="Harvester's database: its SQLite file ([db] database_filename) or a "
              "SQLAlchemy URL.")
@click.option("--queue", default=None, help="Only this queue.")
@click.option("--list", "as_list", is_flag=True, help="One line per worker, with its jobs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def workers(location: str, queue: str | None, as_list: bool, as_json: bool) -> None:
    """Harvester's workers per queue: how many in each state, or each worker and its jobs."""
    try:
        found = read_workers(location, queue)
    except EpicWfmsError as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        rows = [{"worker_id": w.worker_id, "queue": w.queue, "status": w.status,
                 "batch_id": w.batch_id, "submit_time": _iso(w.submit_time),
                 "start_time": _iso(w.start_time), "end_time": _iso(w.end_time),
                 "exit_code": w.exit_code, "native_status": w.native_status,
                 "diagnostics": w.diagnostics, "panda_ids": list(w.panda_ids)} for w in found]
        click.echo(json.dumps(rows if as_list else {
            q: dict(c) for q, c in per_queue(found).items()}, indent=1))
        return
    if as_list:
        table = Table(title=f"{len(found)} Harvester workers")
        for column in ("worker", "queue", "status", "batch ID", "submitted", "ended", "exit",
                       "PanDA jobs", "diagnostics"):
            table.add_column(column)
        for w in found:
            table.add_row(str(w.worker_id), w.queue, w.status, w.batch_id or "",
                          _iso(w.submit_time) or "", _iso(w.end_time) or "",
                          "" if w.exit_code is None else str(w.exit_code),
                          " ".join(map(str, w.panda_ids)), w.diagnostics or "")
        Console().print(table)
        return
    table = Table(title="Harvester workers per queue")
    for column in ("queue", "alive", "by state"):
        table.add_column(column)
    for name, counts in per_queue(found).items():
        alive = sum(n for status, n in counts.items() if status in ALIVE)
        table.add_row(name, str(alive), ", ".join(f"{s} {n}" for s, n in sorted(counts.items())))
    Console().print(table)


def _iso(value) -> str | None:
    return value.isoformat(sep=" ", timespec="seconds") if value else None
