"""Workers: heartbeats in, the fleet's health out."""
from __future__ import annotations

from flask import jsonify
from werkzeug.exceptions import BadRequest

from .. import lifecycle, queries
from . import bp
from .auth import board_for_request
from .schema import body_object, get, int_list


@bp.post("/boards/<name>/heartbeat")
def heartbeat(name: str):
    board = board_for_request(name)
    data = body_object()
    running = int_list(data, "running") if data.get("running") is not None else []
    samples_in = get(data, "samples", dict, default={})
    try:
        samples = {int(k): v for k, v in samples_in.items() if isinstance(v, dict)}
    except ValueError:
        raise BadRequest("'samples' keys must be attempt ids") from None
    logs_in = get(data, "logs", dict, default={})
    try:
        logs = {int(k): v for k, v in logs_in.items() if isinstance(v, str)}
    except ValueError:
        raise BadRequest("'logs' keys must be attempt ids") from None
    answer = lifecycle.heartbeat(
        board.id, get(data, "worker", str), running, samples,
        host=get(data, "host", str, default=None), pid=get(data, "pid", int, default=None),
        resources=get(data, "resources", dict, default=None),
        stopped=get(data, "stopped", bool, default=False), logs=logs)
    return jsonify(answer)


@bp.get("/boards/<name>/workers")
def workers(name: str):
    board = board_for_request(name)
    return jsonify(workers=queries.list_workers(board.id))
