"""Live logs: a job's output, kept per attempt while it runs, as plain text.

``/logs/<key>`` rather than ``/jobs/<key>/log``: a key may contain '/',
and ``jobs/a/log`` would be the job "a/log" as well."""
from __future__ import annotations

from flask import current_app

from .. import joblogs
from ..roles import requires
from . import bp
from .auth import bearer, board_for_request, still_may
from .validate import query


@bp.get("/boards/<name>/logs/<path:key>")
@requires("read")
def job_log(name: str, key: str):
    board = board_for_request(name)
    q = query("/boards/{name}/logs/{key}")
    # everything kept (an attempt keeps at most LOG_MAX_PER_JOB bytes)
    everything = int(current_app.config["LOG_MAX_PER_JOB"]) * 2 + joblogs.PAGE_BYTES
    app, token = current_app._get_current_object(), bearer() or ""  # type: ignore[attr-defined]

    def allowed() -> bool:  # asked again while a followed log streams
        with app.app_context():
            return still_may(token, board, "read")

    return joblogs.text_response(board.id, key, q, everything, allowed)
