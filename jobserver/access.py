"""Who may view the dashboard.

``VIEW_PASSWORD`` empty (the default): the pages are open to anyone who can
reach the server.  Set it and every page, the job-table JSON and the live
connection ask for HTTP Basic authentication with that password (any user
name).  Job payloads often hold paths and parameters: on a shared cluster,
set a password (and serve over HTTPS).  The classic protocol keeps its jobix,
the API its bearer tokens.
"""
from __future__ import annotations

import hmac

from flask import Response, current_app, request


def allowed() -> bool:
    password = current_app.config.get("VIEW_PASSWORD") or ""
    if not password:
        return True
    auth = request.authorization
    return bool(auth and auth.password is not None
                and hmac.compare_digest(auth.password, password))


def challenge() -> Response:
    return Response("This dashboard needs the viewer password (JOBSERVER_VIEW_PASSWORD).\n",
                    401, {"WWW-Authenticate": 'Basic realm="jobserver dashboard"'},
                    mimetype="text/plain")


def guard() -> Response | None:
    """A before_request hook: None lets the request through."""
    return None if allowed() else challenge()
