"""Jobs: push, list, detail; claim, advance, fail, release, cancel."""
from __future__ import annotations

import json

from flask import jsonify, request
from werkzeug.exceptions import BadRequest, NotFound

from .. import lifecycle, pools, queries, wakeup
from ..lifecycle import Advance
from ..limits import INT64_MAX, max_payload, payload_too_large, storable
from . import bp
from ..roles import requires
from .auth import board_for_request
from .openapi import ADVANCE_ITEM, MAX_BATCH, PUSH_RULES
from .validate import body_items, body_object, check_body, query

MAX_KEY = PUSH_RULES["max_key"]  # the description's rules, checked by hand for speed
MAX_PUSH_STAGE = PUSH_RULES["max_stage"]


def _key(key: object, n: int | str, field: str = "key") -> str:
    if type(key) is not str:
        if type(key) is not int or not -INT64_MAX - 1 <= key <= INT64_MAX:
            raise BadRequest(f"job {n}: '{field}' must be a string or a 64-bit integer")
        key = str(key)
    if not 0 < len(key) <= MAX_KEY or "\x00" in key or not (key.isascii() or storable(key)):
        raise BadRequest(f"job {n}: '{field}' must be 1 to {MAX_KEY} characters of valid "
                         "Unicode, no NUL")
    return key


def _int_in(item: dict, field: str, bounds: tuple[int, int], n: str) -> int | None:
    if field not in item:
        return None
    value = item[field]  # present: an integer (null is not one)
    if type(value) is not int or not bounds[0] <= value <= bounds[1]:
        raise BadRequest(f"job {n}: '{field}' must be an integer from {bounds[0]} to "
                         f"{bounds[1]}")
    return value


def _extras(item: dict, key: str, n: int) -> lifecycle.Extras:
    """A job's upstream keys, priority and attempts, checked."""
    where = f"{n} ({key[:50]!r})"
    after = item.get("after", [])  # present: a list (null is not one)
    if type(after) is not list or len(after) > PUSH_RULES["max_after"]:
        raise BadRequest(f"job {where}: 'after' must be a list of at most "
                         f"{PUSH_RULES['max_after']} keys")
    return lifecycle.Extras(
        tuple(dict.fromkeys(_key(a, where, "after") for a in after)),
        _int_in(item, "priority", PUSH_RULES["priority"], where) or 0,
        _int_in(item, "max_attempts", PUSH_RULES["max_attempts"], where))


_EXTRA_FIELDS = ("after", "priority", "max_attempts")


def _new_jobs(items: list) -> tuple[list[tuple[str, str, int]], dict[str, lifecycle.Extras]]:
    """Validate pushed jobs into (key, payload JSON, stage) triples, the
    shape of NewJob, and the extras of those that have some, by the rules
    of the NewJob schema (openapi.PUSH_RULES).  The loop is kept tight, a
    big push runs it a million times (the checks are exact type tests: a
    bool is no int)."""
    jobs = []
    found: dict[str, tuple[int, lifecycle.Extras]] = {}  # key -> (index, extras)
    append, dumps = jobs.append, json.dumps
    limit = max_payload()
    for n, item in enumerate(items, 1):
        if type(item) is not dict or "key" not in item:
            raise BadRequest(f"job {n}: expected an object {{\"key\": ..., \"payload\": ...}}")
        key = item["key"]
        if type(key) is not str or not 0 < len(key) <= MAX_KEY or not key.isascii() \
                or "\x00" in key:
            key = _key(key, n)
        if len(item) > 1 and any(f in item for f in _EXTRA_FIELDS):
            found.setdefault(key, (n - 1, _extras(item, key, n)))
        stage = item.get("stage", 0)
        if type(stage) is not int or not 0 <= stage <= MAX_PUSH_STAGE:
            raise BadRequest(f"job {n}: 'stage' must be an integer from 0 to {MAX_PUSH_STAGE}")
        payload = dumps(item.get("payload"))
        if len(payload) > limit:
            raise payload_too_large(key, len(payload), limit)
        append((key, payload, stage))
    return jobs, _first_occurrences_only(jobs, found) if found else {}


MAX_PUSH_EDGES = 10_000_000  # 'after' keys in one push, all jobs together


def _first_occurrences_only(jobs: list[tuple[str, str, int]],
                            found: dict[str, tuple[int, lifecycle.Extras]]
                            ) -> dict[str, lifecycle.Extras]:
    """A key pushed twice is the first one's (as its payload is): the
    extras a later repetition brought are dropped.  Bounds the push's edges."""
    first: dict[str, int] = {}
    for i, (key, _, _) in enumerate(jobs):
        if key in found and key not in first:
            first[key] = i
    extras = {k: e for k, (i, e) in found.items() if first[k] == i}
    edges = sum(len(e.after) for e in extras.values())
    if edges > MAX_PUSH_EDGES:
        raise BadRequest(f"this push has {edges} 'after' keys in all: at most "
                         f"{MAX_PUSH_EDGES} in one push; push the workflow in parts, upstream "
                         "jobs first")
    return extras


@bp.post("/boards/<name>/jobs")
@requires("push")
def push(name: str):
    board = board_for_request(name)
    strict = query("/boards/{name}/jobs", "post")["strict"]
    items = body_items()
    if type(items) is not list:
        raise BadRequest("the body must be a JSON array of jobs, or JSON lines")
    jobs, extras = _new_jobs(items)
    done = lifecycle.push_jobs(board.id, jobs, extras, strict=strict)
    return jsonify(created=done.created, existing=done.existing, changed=len(done.changed),
                   changed_keys=done.changed[:50])


@bp.get("/boards/<name>/jobs")
@requires("read")
def list_jobs(name: str):
    board = board_for_request(name)
    q = query("/boards/{name}/jobs")
    include = tuple(x for x in (q["include"] or "").split(",") if x)
    jobs, cursor = queries.list_jobs(board.id, q["stage"], q["state"], q["cursor"] or 0,
                                     q["limit"], include)
    return jsonify(jobs=jobs, next_cursor=cursor)


@bp.get("/boards/<name>/jobs/<path:key>")
@requires("read")
def job_detail(name: str, key: str):
    board = board_for_request(name)
    job = queries.job_detail(board.id, key)
    if job is None:
        raise NotFound(f"no job {key!r} on board {name!r}")
    return jsonify(job)


@bp.get("/boards/<name>/jobs/<path:key>/resources")
@requires("read")
def job_resources(name: str, key: str):
    """A job's resource log (the samples its workers sent while it ran)."""
    board = board_for_request(name)
    samples = pools.job_resources(board.id, key)
    if samples is None:
        raise NotFound(f"no job {key!r} on board {name!r}")
    return jsonify(samples=samples)


@bp.post("/boards/<name>/claim")
@requires("claim")
def claim(name: str):
    board = board_for_request(name)
    data = check_body(body_object(), "/boards/{name}/claim")
    got = wakeup.wait_for(board.id, data["stage"], data.get("wait", 0), lambda: lifecycle.claim(
        board.id, data["stage"], data.get("n", 1), to_stage=data.get("to_stage"),
        worker=data["worker"], host=data.get("host"), pid=data.get("pid"), lease=True,
        allocation=data.get("allocation")))
    return jsonify(jobs=[{"key": j.key, "payload": json.loads(j.payload), "stage": j.stage,
                          "attempt_id": j.attempt_id, "attempt": j.attempt} for j in got])


def _result(item: dict) -> str | None:
    if item.get("result") is None:
        return None
    text = json.dumps(item["result"])
    if len(text) > max_payload():
        raise payload_too_large(f"of attempt {item['attempt_id']}", len(text), max_payload())
    return text


_PLAIN_KEYS = {"attempt_id", "log"}
_ID_MAX = ADVANCE_ITEM["properties"]["attempt_id"]["maximum"]


def _plain_advance(data: dict) -> bool:
    """The usual advance (attempt ids, maybe output tails), recognised
    without walking the schema: a body this accepts is one the schema
    accepts (tests/unit/test_contract.py), at a tenth of the cost."""
    items = data.get("attempts")
    if data.keys() != {"attempts"} or type(items) is not list or len(items) > MAX_BATCH:
        return False
    for i in items:
        if type(i) is not dict or not i.keys() <= _PLAIN_KEYS:
            return False
        a, log = i.get("attempt_id"), i.get("log")
        if type(a) is not int or not 0 <= a <= _ID_MAX or not (log is None or type(log) is str):
            return False
    return True


@bp.post("/boards/<name>/advance")
@requires("advance")
def advance(name: str):
    board = board_for_request(name)
    data = body_object()
    if not _plain_advance(data):
        check_body(data, "/boards/{name}/advance")
    todo = [Advance(i["attempt_id"], i.get("to_stage"), _result(i), i.get("filename"),
                    i.get("log")) for i in data["attempts"]]
    return jsonify(lifecycle.advance(board.id, todo))


@bp.post("/boards/<name>/fail")
@requires("fail")
def fail(name: str):
    board = board_for_request(name)
    data = check_body(body_object(), "/boards/{name}/fail")
    outcome = lifecycle.fail(board.id, data["attempt_id"], data.get("error") or "",
                             exit_code=data.get("exit_code"), log=data.get("log"))
    return jsonify(outcome=outcome)


@bp.post("/boards/<name>/release")
@requires("release")
def release(name: str):
    board = board_for_request(name)
    data = check_body(body_object(), "/boards/{name}/release")
    return jsonify(released=lifecycle.release(board.id, data["attempt_ids"]))


@bp.post("/boards/<name>/retry")
@requires("retry")
def retry(name: str):
    """Failed or cancelled jobs back to waiting, with a fresh attempt budget."""
    board = board_for_request(name)
    data = check_body(body_object(), "/boards/{name}/retry")
    keys = data.get("keys")
    return jsonify(retried=lifecycle.retry(board.id, None if keys is None
                                           else [str(k) for k in keys], data.get("state")))


@bp.post("/boards/<name>/priority")
@requires("priority")
def priority(name: str):
    board = board_for_request(name)
    data = check_body(body_object(), "/boards/{name}/priority")
    return jsonify(changed=lifecycle.set_priority(board.id, [str(k) for k in data["keys"]],
                                                  data["priority"]))


@bp.post("/boards/<name>/cancel")
@requires("cancel")
def cancel(name: str):
    board = board_for_request(name)
    data = check_body(body_object() if request.get_data() else {}, "/boards/{name}/cancel")
    keys = data.get("keys")
    return jsonify(cancelled=lifecycle.cancel(board.id, None if keys is None
                                              else [str(k) for k in keys]))
