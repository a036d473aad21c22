"""Jobs: push, list, detail; claim, advance, fail, release, cancel."""
from __future__ import annotations

import json

from flask import current_app, jsonify, request
from werkzeug.exceptions import BadRequest, NotFound

from .. import lifecycle, queries
from ..lifecycle import Advance
from ..limits import MAX_STAGE, max_payload, parse_int, payload_too_large
from . import bp
from .auth import board_for_request
from .schema import body_items, body_object, get, int_list

MAX_CLAIM = 1000
MAX_KEY = 200


def _new_jobs(items: list) -> list[tuple[str, str, int]]:
    """Validate pushed jobs into (key, payload JSON, stage) triples, the
    shape of NewJob.  The loop is kept tight, a big push runs it a million
    times (the checks are exact type tests: a bool is no int)."""
    jobs = []
    append, dumps = jobs.append, json.dumps
    limit = max_payload()
    for n, item in enumerate(items, 1):
        if type(item) is not dict or "key" not in item:
            raise BadRequest(f"job {n}: expected an object {{\"key\": ..., \"payload\": ...}}")
        key = item["key"]
        if type(key) is not str:
            if type(key) is not int:
                raise BadRequest(f"job {n}: 'key' must be a string or an integer")
            key = str(key)
        if not 0 < len(key) <= MAX_KEY:
            raise BadRequest(f"job {n}: 'key' must be 1 to {MAX_KEY} characters")
        stage = item.get("stage", 0)
        if type(stage) is not int or not 0 <= stage <= MAX_STAGE:
            raise BadRequest(f"job {n}: 'stage' must be an integer from 0 to {MAX_STAGE}")
        payload = dumps(item.get("payload"))
        if len(payload) > limit:
            raise payload_too_large(key, len(payload), limit)
        append((key, payload, stage))
    return jobs


@bp.post("/boards/<name>/jobs")
def push(name: str):
    board = board_for_request(name)
    jobs = _new_jobs(body_items())
    created, existing = lifecycle.push(board.id, jobs)
    return jsonify(created=created, existing=existing)


@bp.get("/boards/<name>/jobs")
def list_jobs(name: str):
    board = board_for_request(name)
    args = request.args
    stage = None if args.get("stage") in (None, "") else parse_int(args["stage"], "stage", 0,
                                                                    MAX_STAGE)
    after = parse_int(args.get("cursor") or "0", "cursor")
    limit = parse_int(args.get("limit") or "100", "limit", 1, 1000)
    state = args.get("state") or None
    if state is not None and state not in queries.STATUSES:
        raise BadRequest(f"state must be one of {', '.join(queries.STATUSES)}")
    include = tuple(x for x in (args.get("include") or "").split(",") if x)
    unknown = set(include) - set(queries.LIST_EXTRAS)
    if unknown:
        raise BadRequest(f"include takes {', '.join(queries.LIST_EXTRAS)} (comma-separated), "
                         f"not {', '.join(sorted(unknown))}")
    jobs, cursor = queries.list_jobs(board.id, stage, state, after, limit, include)
    return jsonify(jobs=jobs, next_cursor=cursor)


@bp.get("/boards/<name>/jobs/<path:key>")
def job_detail(name: str, key: str):
    board = board_for_request(name)
    job = queries.job_detail(board.id, key)
    if job is None:
        raise NotFound(f"no job {key!r} on board {name!r}")
    return jsonify(job)


@bp.post("/boards/<name>/claim")
def claim(name: str):
    board = board_for_request(name)
    data = body_object()
    stage = get(data, "stage", int, minimum=0)
    got = lifecycle.claim(
        board.id, stage, get(data, "n", int, default=1, minimum=1, maximum=MAX_CLAIM),
        to_stage=get(data, "to_stage", int, default=None, minimum=0),
        worker=get(data, "worker", str), host=get(data, "host", str, default=None),
        pid=get(data, "pid", int, default=None), lease=True)
    current_app.logger.debug("claimed %d at stage %d", len(got), stage)
    return jsonify(jobs=[{"key": j.key, "payload": json.loads(j.payload), "stage": j.stage,
                          "attempt_id": j.attempt_id, "attempt": j.attempt} for j in got])


@bp.post("/boards/<name>/advance")
def advance(name: str):
    board = board_for_request(name)
    data = body_object()
    items = get(data, "attempts", list)
    if len(items) > 10_000:
        raise BadRequest("at most 10,000 attempts in one advance")
    todo = []
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise BadRequest(f"attempts[{n}]: expected an object with 'attempt_id'")
        result = item.get("result")
        result_text = None if result is None else json.dumps(result)
        if result_text is not None and len(result_text) > max_payload():
            raise payload_too_large(str(item.get("attempt_id")), len(result_text), max_payload())
        todo.append(Advance(
            get(item, "attempt_id", int), get(item, "to_stage", int, default=None, minimum=0),
            result_text,
            get(item, "filename", str, default=None), get(item, "log", str, default=None)))
    return jsonify(lifecycle.advance(board.id, todo))


@bp.post("/boards/<name>/fail")
def fail(name: str):
    board = board_for_request(name)
    data = body_object()
    outcome = lifecycle.fail(board.id, get(data, "attempt_id", int),
                             get(data, "error", str, default=""),
                             exit_code=get(data, "exit_code", int, default=None),
                             log=get(data, "log", str, default=None))
    return jsonify(outcome=outcome)


@bp.post("/boards/<name>/release")
def release(name: str):
    board = board_for_request(name)
    data = body_object()
    return jsonify(released=lifecycle.release(board.id, int_list(data, "attempt_ids")))


@bp.post("/boards/<name>/cancel")
def cancel(name: str):
    board = board_for_request(name)
    data = body_object() if request.get_data() else {}
    keys = get(data, "keys", list, default=None)
    if keys is not None and not all(isinstance(k, (str, int)) and not isinstance(k, bool)
                                    for k in keys):
        raise BadRequest("'keys' must be a list of job keys")
    return jsonify(cancelled=lifecycle.cancel(board.id, None if keys is None
                                              else [str(k) for k in keys]))
