"""Workers: heartbeats in, the fleet's health out."""
from __future__ import annotations

from typing import Any

from flask import jsonify
from werkzeug.exceptions import BadRequest

from .. import lifecycle, queries
from . import bp
from .auth import board_for_request
from .openapi import MAX_NOTES
from .validate import body_object, check_body


def _by_attempt(mapping: dict | None, kind: type) -> dict[int, Any]:
    """{attempt id: value} from a JSON object; keys that are no attempt id
    (and values of the wrong kind) are ignored, as the description says."""
    out = {}
    for k, v in (mapping or {}).items():
        if isinstance(v, kind) and k.isascii() and k.isdigit() and len(k) <= 18:
            out[int(k)] = v
    return out


@bp.post("/boards/<name>/heartbeat")
def heartbeat(name: str):
    board = board_for_request(name)
    data = check_body(body_object(), "/boards/{name}/heartbeat")
    answer = lifecycle.heartbeat(
        board.id, data["worker"], data.get("running") or [],
        _by_attempt(data.get("samples"), dict), host=data.get("host"), pid=data.get("pid"),
        resources=data.get("resources"), stopped=bool(data.get("stopped")),
        logs=_by_attempt(data.get("logs"), str), notes=_notes(data.get("notes")))
    return jsonify(answer)


def _notes(mapping: dict | None) -> dict[int, list[dict[str, str]]]:
    notes = _by_attempt(mapping, list)
    if sum(len(n) for n in notes.values()) > MAX_NOTES:
        raise BadRequest(f"notes: at most {MAX_NOTES} notes in one heartbeat; send the rest "
                         "with the next one")
    return notes


@bp.get("/boards/<name>/workers")
def workers(name: str):
    board = board_for_request(name)
    return jsonify(workers=queries.list_workers(board.id))
