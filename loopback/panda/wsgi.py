"""WSGI entry for gunicorn, run inside the PanDA server's own venv (no epic_wfms imports).

Under httpd, ``WSGIScriptAliasMatch ^(/server/panda/.+)|(/api/.+)$`` hands PanDA's
``application`` the whole request path in ``SCRIPT_NAME``, which it parses to pick the API
method. gunicorn puts the path in ``PATH_INFO``; this moves it where PanDA looks for it.
Pilot 3.7's legacy ``getJob``/``updateJob`` calls go through ``legacy_pilot_api``.
"""

import legacy_pilot_api
from pandaserver.api.v1 import pilot_api
from pandaserver.server import panda


def application(environ, start_response):
    environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    environ["PATH_INFO"] = ""
    legacy = legacy_pilot_api.translate(environ, start_response, panda.application, pilot_api)
    if legacy is not None:
        return legacy
    return panda.application(environ, start_response)
