"""Workers: heartbeats in, the fleet's health out."""
from __future__ import annotations

import re
from typing import Any

from flask import jsonify
from werkzeug.exceptions import BadRequest

from .. import lifecycle, pools, queries
from . import bp
from ..roles import requires
from .auth import board_for_request
from ..lifecycle.pools import ALLOCATION_FIELDS
from .openapi import ALLOCATION_ID, MAX_NOTES
from .validate import body_object, check_body


ALLOCATION_ID_RE = re.compile(ALLOCATION_ID["pattern"])


def _by_attempt(mapping: dict | None, kind: type) -> dict[int, Any]:
    """{attempt id: value} from a JSON object; keys that are no attempt id
    (and values of the wrong kind) are ignored, as the description says."""
    out = {}
    for k, v in (mapping or {}).items():
        if isinstance(v, kind) and k.isascii() and k.isdigit() and len(k) <= 18:
            out[int(k)] = v
    return out


@bp.post("/boards/<name>/heartbeat")
@requires("heartbeat")
def heartbeat(name: str):
    board = board_for_request(name)
    data = check_body(body_object(), "/boards/{name}/heartbeat")
    answer = lifecycle.heartbeat(
        board.id, data["worker"], data.get("running") or [],
        _by_attempt(data.get("samples"), dict), host=data.get("host"), pid=data.get("pid"),
        resources=data.get("resources"), stopped=bool(data.get("stopped")),
        logs=_by_attempt(data.get("logs"), str), notes=_notes(data.get("notes")),
        allocation=data.get("allocation"), chunks=_by_attempt(data.get("chunks"), list))
    return jsonify(answer)


def _notes(mapping: dict | None) -> dict[int, list[dict[str, str]]]:
    notes = _by_attempt(mapping, list)
    if sum(len(n) for n in notes.values()) > MAX_NOTES:
        raise BadRequest(f"notes: at most {MAX_NOTES} notes in one heartbeat; send the rest "
                         "with the next one")
    return notes


@bp.get("/boards/<name>/workers")
@requires("read")
def workers(name: str):
    board = board_for_request(name)
    return jsonify(workers=queries.list_workers(board.id))


@bp.put("/boards/<name>/allocations/<allocation>")
@requires("report")
def report_allocation(name: str, allocation: str):
    """A pool reports what its scheduler says of one of its allocations."""
    board = board_for_request(name)
    if not ALLOCATION_ID_RE.match(allocation):
        raise BadRequest("an allocation id is 1 to 200 letters, digits, '.', '_', ':' or '-'")
    data = check_body(body_object(), "/boards/{name}/allocations/{allocation}", "put")
    lifecycle.report_allocation(board.id, allocation, data["state"], **{
        k: data[k] for k in ALLOCATION_FIELDS if k in data})  # others are ignored
    return jsonify(pools.list_allocations(board.id, only=allocation)[0])


@bp.get("/boards/<name>/allocations")
@requires("read")
def allocations(name: str):
    board = board_for_request(name)
    return jsonify(allocations=pools.list_allocations(board.id))
