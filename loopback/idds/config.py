"""The loopback iDDS server's configuration files: ``idds.cfg``, ``auth.cfg``, ``alembic.ini``.

``idds.cfg`` (``IDDS_CONFIG``) names the database and schema, the REST host, the daemons'
poll periods and the prompt service's brokers; ``auth.cfg`` (``IDDS_AUTH_CONFIG``) allows the
VO and points its OIDC discovery at our issuer; ``alembic.ini`` (``ALEMBIC_CONFIG``) is what
``build_database`` stamps the schema version with, using iDDS's own migration scripts.
"""

from __future__ import annotations

import json
from pathlib import Path

from loopback.common import ALEMBIC_LOGGING

SCHEMA = "doma_idds"
#: the daemons' poll periods for new and for running items (production: 10-300 s). Running
#: items are polled slowly on purpose: the Clerk drops a command whose request it finds
#: locked by an update (an iDDS race), so requests must sit idle most of the time
POLL_S = 1
UPDATE_POLL_S = 30


def write_config(workdir: Path, *, venv: Path, database_url: str, rest_url: str, vo: str,
                 client_id: str, discovery_url: str, broker: dict, prompt_topic: str,
                 reply_topic: str, update_poll_s: int = UPDATE_POLL_S) -> None:
    """Write the three files into ``workdir`` (log and cache directories beside them)."""
    migrations = next(venv.glob("lib/python*/site-packages/idds/orm/base/alembic"))
    (workdir / "alembic.ini").write_text(_ALEMBIC_INI.format(
        scripts=migrations, url=database_url, schema=SCHEMA))
    (workdir / "auth.cfg").write_text(_AUTH_CFG.format(
        vo=vo, client_id=client_id, discovery=discovery_url))
    for folder in ("cache", "log"):
        (workdir / folder).mkdir(parents=True, exist_ok=True)
    (workdir / "idds.cfg").write_text(_IDDS_CFG.format(
        logdir=workdir / "log", url=database_url, schema=SCHEMA, rest=rest_url,
        cache=workdir / "cache", poll=POLL_S, update_poll=update_poll_s,
        subscriber=json.dumps({**broker, "destination": prompt_topic}),
        publisher=json.dumps({**broker, "destination": reply_topic})))


_ALEMBIC_INI = """[alembic]
script_location = {scripts}
sqlalchemy.url = {url}
version_table_schema = {schema}
""" + ALEMBIC_LOGGING

_AUTH_CFG = """[common]
allow_vos = {vo}

[{vo}]
vo = {vo}
client_id = {client_id}
audience = {client_id}
oidc_config_url = {discovery}
no_verify = True

[Users]
allow_users =
ban_users =
super_users =
"""

_AGENT = """num_threads = 4
max_number_workers = 8
poll_period = {poll}
new_poll_period = {poll}
update_poll_period = {update_poll}
update_poll_period_for_new_task = {update_poll}
poll_time_period = {poll}
poll_operation_time_period = {poll}
new_command_poll_period = {poll}
update_command_poll_period = {poll}
retrieve_bulk_size = 16
message_bulk_size = 100
pending_time = 0
"""

_IDDS_CFG = """[common]
logdir = {logdir}
loglevel = INFO

[database]
default = {url}
schema = {schema}
pool_size = 4
max_overflow = 4
pool_recycle = 3600
echo = 0
pool_reset_on_return = rollback

[rest]
host = {rest}
cacher_dir = {cache}

[main]
agents = clerk, transformer

[eventbus]
backend = default

[clerk]
""" + _AGENT + """
[transformer]
""" + _AGENT + """
[carrier]
""" + _AGENT + """# the prompt service's processings (iWork: the fast path's worker task) are
# polled and, at close_workflow_task, aborted in PanDA by iDDS's own PanDA plug-in
plugin.iwork_poller = idds.agents.carrier.plugins.panda.PandaSubmitterPoller

[prompt]
num_threads = 1
worker_subscriber_broker = {subscriber}
worker_publisher_broker = {publisher}
"""
