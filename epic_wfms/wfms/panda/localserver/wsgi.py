"""WSGI entry for gunicorn, run inside the PanDA server's own venv (no epic_wfms imports).

Under httpd, ``WSGIScriptAliasMatch ^(/server/panda/.+)|(/api/.+)$`` hands PanDA's
``application`` the whole request path in ``SCRIPT_NAME``, which it parses to pick the API
method. gunicorn puts the path in ``PATH_INFO``; this moves it where PanDA looks for it.
"""

from pandaserver.server import panda


def application(environ, start_response):
    environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    environ["PATH_INFO"] = ""
    return panda.application(environ, start_response)
