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
@click.option("--tls-cert", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              default=None, help="Serve HTTPS with this certificate (monitor.tls_certfile).")
@click.option("--tls-key", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              default=None, help="... and this private key (monitor.tls_keyfile).")
@CONFIG
@DATA_DIR
@click.pass_context
def monitor(ctx: click.Context, host: str | None, port: int | None, tls_cert: Path | None,
            tls_key: Path | None, config_path: Path | None, data_dir: Path | None) -> None:
    """Serve the web monitor and REST API (/api/v1) of the bookkeeping store."""
    if ctx.invoked_subcommand is not None:
        return
    from epic_wfms.monitor.keys import key_file_warnings
    from epic_wfms.monitor.server import serve, url_of
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    config = _config(config_path, data_dir, host=host, port=port, tls_certfile=tls_cert,
                     tls_keyfile=tls_key)
    monitor = config.monitor
    for warning in key_file_warnings(config):
        click.echo(f"warning: {warning}", err=True)
    if monitor.exposed and not monitor.tls_certfile:
        click.echo("note: serving plain HTTP beyond this host: put a TLS-terminating reverse "
                   "proxy in front (docs/security.md) or give --tls-cert/--tls-key", err=True)
    reads = "need a token" if monitor.reads_need_token else "are open"
    click.echo(f"epic-wfms monitor on {url_of(config, monitor.host, monitor.port)} "
               f"(API docs /api/v1/docs; reads {reads})", err=True)
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
    try:
        click.echo(issue_token(_config(config_path, data_dir), username, list(roles), ttl))
    except EpicWfmsError as error:
        raise click.ClickException(str(error)) from error


@monitor.command()
@click.option("--jti", default=None, help="The token's jti claim: revoke that token.")
@click.option("--subject", default=None,
              help="Revoke every token of this subject issued until now.")
@click.option("--issuer", default=None, help="The subject's issuer (default: the local one).")
@click.option("--reason", required=True, help="Why (kept in the command log).")
@CONFIG
@DATA_DIR
def revoke(jti: str | None, subject: str | None, issuer: str | None, reason: str,
           config_path: Path | None, data_dir: Path | None) -> None:
    """Revoke tokens in the store this monitor reads (every replica refuses them within
    seconds); as the REST call POST /api/v1/tokens/revoke, recorded in the command log."""
    import getpass

    from epic_wfms.installation import open_database
    from epic_wfms.monitor import revocation
    if (jti is None) == (subject is None):
        raise click.UsageError("give --jti or --subject (not both)")
    config = _config(config_path, data_dir)
    db = open_database(config)
    try:
        with db.session() as session:
            command = revocation.record(
                session, f"cli:{getpass.getuser()}", "admin", reason, jti=jti,
                issuer=issuer or config.monitor.local_issuer if subject else None,
                subject=subject)
            click.echo(command.result)
    finally:
        db.dispose()


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
