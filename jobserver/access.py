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
from urllib.parse import urlsplit

from flask import Response, current_app, request
from werkzeug.exceptions import Forbidden


def allowed() -> bool:
    password = current_app.config.get("VIEW_PASSWORD") or ""
    if not password:
        return True
    auth = request.authorization
    # bytes: compare_digest refuses str with non-ASCII characters
    return bool(auth and auth.password is not None
                and hmac.compare_digest(auth.password.encode(), password.encode()))


def challenge() -> Response:
    return Response("This dashboard needs the viewer password (JOBSERVER_VIEW_PASSWORD).\n",
                    401, {"WWW-Authenticate": 'Basic realm="jobserver dashboard"'},
                    mimetype="text/plain")


def guard() -> Response | None:
    """A before_request hook: None lets the request through."""
    return None if allowed() else challenge()


WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def same_origin_writes() -> None:
    """A before_request hook: a browser's write from another site's page is
    refused.  Browsers send ``Origin`` with every cross-site write (and with
    same-site POSTs); scripts and workers send none and are not affected."""
    if request.method not in WRITES:
        return
    origin = request.headers.get("Origin")
    if origin is None:
        return
    try:
        host = urlsplit(origin).netloc.lower()
    except ValueError:  # not a URL at all
        host = ""
    if origin == "null" or host != request.host.lower():
        raise Forbidden(f"a write from a page of another site ({origin[:100]}) is refused")
