"""The JSON API, /api/v1: the modern face of the board.

Every answer is JSON; every failure is ``{"error", "message"}`` with its
4xx/5xx status (jobserver.errors).  Each board's routes need a bearer token
of that board, or a user's key, with a role that may do what the route
declares (jobserver/roles.py).
"""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from . import accounts, boards, events, jobs, logs, workers  # noqa: E402,F401  (routes)
from .openapi import document  # noqa: E402


@bp.get("/openapi.json")
def openapi():
    return document()
