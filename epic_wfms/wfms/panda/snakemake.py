"""Snakemake's jobs as PanDA jobs: ``snakemake --executor panda`` (eic's
``snakemake-executor-plugin-panda``) with epic-wfms's PanDA configuration.

The plugin turns each Snakemake job into a JEDI task through panda-client (``prun``'s task
parameters, ``insertTaskParams``) and polls ``getTaskStatus`` until ``done``/``failed``.
panda-client reads its server and identity from the environment; this module writes that
environment from ``wfms.panda`` (url, auth_vo, token_file, verify_host) plus the plugin's
own variables (``PANDA_SITE``, ``PANDA_VO``, ``PANDA_AUTH_VO``). The plugin moves files
between jobs through a Snakemake storage provider (it declares no shared file system), so
the caller gives ``--default-storage-provider``/``--default-storage-prefix``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from epic_wfms.config import PandaConfig
from epic_wfms.wfms.panda.errors import PandaError

EXECUTOR = "panda"


def snakemake_environment(panda: PandaConfig, site: str, vo: str = "epic",
                          config_root: Path | None = None,
                          base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment under which Snakemake's PanDA executor talks to ``panda.url`` as the
    token's owner and sends its jobs to queue ``site``."""
    if not panda.url or panda.token_file is None:
        raise PandaError("no PanDA server configured for Snakemake's PanDA executor",
                         why="wfms.panda.url and wfms.panda.token_file are empty",
                         fix="set them in the configuration (docs/configuration.md)")
    try:
        token = Path(panda.token_file).read_text().strip()
    except OSError as error:
        raise PandaError(f"cannot read the PanDA token file {panda.token_file}", why=str(error),
                         fix="write your OIDC ID token there (docs/snakemake.md)") from None
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith("PANDA")}
    env.update(PANDA_URL=panda.url, PANDA_URL_SSL=panda.url, PANDACACHE_URL=panda.url,
               PANDA_AUTH="oidc", PANDA_AUTH_VO=panda.auth_vo, PANDA_AUTH_ID_TOKEN=token,
               PANDA_VO=vo, PANDA_SITE=site,
               # panda-client resolves a cache host name at import unless told it is behind
               # a real load balancer (every Snakemake start imports the plugin)
               PANDA_BEHIND_REAL_LB="1")
    if config_root is not None:  # panda-client's token cache: one per identity and server
        env["PANDA_CONFIG_ROOT"] = str(config_root)
    if not panda.verify_host:
        env["PANDA_VERIFY_HOST"] = "off"
    return env


def snakemake_command(args: list[str], python: str = sys.executable) -> list[str]:
    """``snakemake --executor panda ARGS`` with this interpreter's Snakemake."""
    return [python, "-m", "snakemake", "--executor", EXECUTOR, *args]
