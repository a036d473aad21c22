"""The JSON API, /api/v1: the modern face of the board.

Every answer is JSON; every failure is ``{"error", "message"}`` with its
4xx/5xx status (jobserver.errors).  Each board's routes need a bearer token
of that board (``Authorization: Bearer <token>``).
"""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from . import boards, jobs, workers  # noqa: E402,F401  (routes)
from . import logs  # noqa: E402,F401  (live logs)
from .openapi import document  # noqa: E402


@bp.get("/openapi.json")
def openapi():
    return document()
