"""The one description of /api/v1: its OpenAPI 3 document (served at
/api/v1/openapi.json) is built from the same schema objects that validate
the requests (api/validate.py), so every rule the server enforces is in the
document, and the document is what the server enforces."""
from __future__ import annotations

from typing import Any

from flask import jsonify

from ..limits import INT64_MAX, MAX_STAGE
from ..models import EventKind, Status
from ..wakeup import MAX_WAIT

# ------------------------------------------------------------------ pieces

INT32_MAX = 2**31 - 1  # the id, pid and exit code columns are 32-bit integers
INT32 = {"type": "integer", "format": "int32", "minimum": -INT32_MAX - 1, "maximum": INT32_MAX}
ID = {"type": "integer", "format": "int32", "minimum": 0, "maximum": INT32_MAX}
STAGE = {"type": "integer", "minimum": 0, "maximum": MAX_STAGE}
NUM = {"type": "number"}
BOOL = {"type": "boolean"}
ANY: dict[str, Any] = {}
MAX_NAME = 200  # worker, host, token and stage names (the columns' width)
# What a database stores: no NUL (PostgreSQL's text refuses it), no lone
# surrogate (UTF-8 cannot encode one; JSON can spell it, "\ud800").
NO_NUL = r"^[^\u0000\ud800-\udfff]*$"  # \u escapes: Python's and ECMA-262's regexes
NAME = {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": NO_NUL}
TEXT = {"type": "string"}
MINUTES = {"type": "number", "minimum": 0, "maximum": 1e9,
           "description": "minutes; 0 = forever"}
MAX_KEY = 200
KEY = {"oneOf": [{"type": "string", "minLength": 1, "maxLength": MAX_KEY, "pattern": NO_NUL},
                 {"type": "integer", "format": "int64", "minimum": -INT64_MAX - 1,
                  "maximum": INT64_MAX}],
       "description": "unique on the board; an integer is read as its decimal text"}
BOARD_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
              "description": "letters, digits, '.', '_' or '-'; not board-<10 hex digits>"}
STATES = [s.value for s in Status]
HEALTH = ["idle", "healthy", "attention", "stalled", "done", "failed"]
MAX_CLAIM = 1000
MAX_BATCH = 10_000  # attempts in one advance or release, ids in one heartbeat
ALLOCATION_ID = {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,200}$",
                 "description": "the scheduler's id of a batch allocation (SLURM_JOB_ID)"}
ALLOCATION_REF = {**ALLOCATION_ID, "description": "the batch allocation the worker runs in "
                                                  "(SLURM_JOB_ID)"}
MAX_RUNNING = {"type": "integer", "minimum": 0, "maximum": INT32_MAX,
               "description": "at most this many of the board's jobs running at once; "
                              "null: no cap"}
MAX_NOTES = 1000  # notes in one heartbeat
MAX_NOTE = 4000  # characters of one note's text
NOTE_TEXT = {"type": "string", "maxLength": MAX_NOTE}
MAX_LOG_CHUNK = 1 << 20  # characters of one piece of output in one heartbeat
MAX_LOG_PIECES = 1000  # pieces of one attempt's output in one heartbeat
LOG_CHUNK = {"type": "object", "required": ["stream", "offset", "text"], "properties": {
    "stream": {"type": "string", "enum": ["out", "err"], "description": "stdout or stderr"},
    "offset": {"type": "integer", "minimum": 0, "maximum": INT64_MAX,
               "description": "where the text starts in its stream: bytes of UTF-8 the "
                              "attempt printed there before it"},
    "text": {"type": "string", "maxLength": MAX_LOG_CHUNK}}}


def obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


def array(items: dict[str, Any], max_items: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "array", "items": items}
    if max_items is not None:
        out["maxItems"] = max_items
    return out


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


# --------------------------------------------------------- request bodies

NOTE = {"oneOf": [
    obj({"kind": {"type": "string", "enum": ["event"]}, "name": NOTE_TEXT,
         "message": NOTE_TEXT}, ["kind", "name"]),
    obj({"kind": {"type": "string", "enum": ["log"]}, "message": NOTE_TEXT},
        ["kind", "message"]),
    obj({"kind": {"type": "string", "enum": ["var"]}, "name": NOTE_TEXT,
         "value": NOTE_TEXT}, ["kind", "name", "value"])]}

MAX_AFTER = 1_000_000  # upstream jobs of one job (an aggregate after every simulation)
ATTEMPTS_LIMIT = {"type": "integer", "minimum": 1, "maximum": 1000}
NEW_JOB = obj({
    "key": KEY, "payload": ANY, "stage": STAGE,
    "after": {**array(KEY, MAX_AFTER),
              "description": "keys of jobs (of this board, pushed before or in this push) that "
                             "must reach the board's last stage before this job is claimed"},
    "priority": {**INT32, "description": "claims take the highest first [default 0]"},
    "max_attempts": {**ATTEMPTS_LIMIT, "description": "this job's own (else the board's)"}},
    ["key"])
ADVANCE_ITEM = obj({
    "attempt_id": ID, "to_stage": nullable(STAGE), "result": ANY,
    "filename": nullable({"type": "string", "maxLength": 4096, "pattern": NO_NUL}),
    "log": nullable(TEXT)}, ["attempt_id"])

ALLOCATION_BODY = obj({
    "pool": NAME, "scheduler": {"type": "string", "enum": ["slurm", "local"]},
    "state": {"type": "string", "enum": ["pending", "running", "ended"]},
    "reason": nullable({"type": "string", "maxLength": 4000, "pattern": NO_NUL}),
    "nodes": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
    "workers_per_node": {"type": "integer", "minimum": 1, "maximum": 100_000},
    "time_limit_s": nullable({"type": "number", "minimum": 0, "maximum": 1e9})}, ["state"])

MAX_TOKEN_LIFETIME = 10 * 365 * 86400  # seconds: the longest expiry a token may get
from ..lifecycle.tokens import LAST_EXPIRY  # noqa: E402  (the latest expires_at)
ROLE = {"type": "string", "enum": ["owner", "submitter", "worker", "viewer"],
        "description": "owner: everything; submitter: push, cancel, retry, priorities; "
                       "worker: claim, heartbeat, advance, fail, release, allocations; "
                       "viewer: read"}
USER_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$",
             "description": "letters, digits, '.', '_', '@' or '-'"}
EXPIRY = {
    "expires_in": {"type": "number", "minimum": 1, "maximum": MAX_TOKEN_LIFETIME,
                   "description": "seconds from now until the token stops working"},
    "expires_at": {"type": "number", "minimum": 0, "maximum": LAST_EXPIRY,
                   "description": "when the token stops working (seconds since the epoch; "
                                  "a time past gives a token expired already)"}}
ONE_EXPIRY = {"not": {"required": ["expires_in", "expires_at"]},
              "description": "expires_in or expires_at, not both"}

BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("/users", "post"): obj({
        "name": USER_NAME, "admin": BOOL, "key_name": NAME,
        "password": {"type": "string", "minLength": 1, "maxLength": 1000, "pattern": NO_NUL,
                     "description": "for the dashboard's login (hashed with scrypt)"}},
        ["name"]),
    ("/boards/{name}/members", "post"): obj({"user": USER_NAME, "role": ROLE},
                                            ["user", "role"]),
    ("/boards/{name}/tokens", "post"): {**obj({"role": ROLE, "name": NAME, **EXPIRY}, ["role"]),
                                        **ONE_EXPIRY},
    ("/boards/{name}/share", "post"): {**obj({"name": NAME, **EXPIRY}), **ONE_EXPIRY},
    ("/boards/{name}/allocations/{allocation}", "put"): ALLOCATION_BODY,
    ("/boards", "post"): obj({
        "name": BOARD_NAME,
        "lifetimes": {**array(MINUTES, MAX_STAGE + 1), "minItems": 1,
                      "description": "an odd number: the last stage is a resting one "
                                     "[default 0/30/0]"},
        "stage_names": {**array({"type": "string", "maxLength": MAX_NAME, "pattern": NO_NUL},
                                MAX_STAGE + 1),
                        "description": "one per stage: as many as lifetimes, if both given"},
        "max_attempts": ATTEMPTS_LIMIT, "max_running": nullable(MAX_RUNNING),
        "auto_requeue": BOOL, "token_name": NAME}, ["name"]),
    ("/boards/{name}", "patch"): obj({
        "max_running": nullable(MAX_RUNNING), "max_attempts": ATTEMPTS_LIMIT,
        "auto_requeue": BOOL}),
    ("/boards/{name}/retry", "post"): {
        **obj({"keys": array(KEY, MAX_BATCH),
               "state": {"type": "string", "enum": ["failed", "cancelled"]}}),
        "anyOf": [{"required": ["keys"]}, {"required": ["state"]}],
        "description": "the keys to retry (failed or cancelled ones), every job in one state, "
                       "or those keys in that state"},
    ("/boards/{name}/priority", "post"): obj({"keys": array(KEY, MAX_BATCH),
                                              "priority": INT32}, ["keys", "priority"]),
    ("/boards/{name}/stages/{stage}", "put"): obj({
        "lifetime": MINUTES, "name": nullable({"type": "string", "maxLength": MAX_NAME,
                                                "pattern": NO_NUL})}),
    ("/boards/{name}/jobs", "post"): {
        **array(NEW_JOB),
        "description": "a JSON array, or JSON lines (one job a line); gzip or zlib accepted"},
    ("/boards/{name}/claim", "post"): obj({
        "stage": STAGE, "n": {"type": "integer", "minimum": 1, "maximum": MAX_CLAIM},
        "worker": NAME, "to_stage": STAGE, "host": nullable(NAME), "pid": nullable(INT32),
        "allocation": nullable(ALLOCATION_REF),
        "wait": {"type": "number", "minimum": 0, "maximum": MAX_WAIT,
                 "description": "seconds to hold the request while no job is claimable: it "
                                "answers as soon as one is (a push, a retry or a requeue "
                                "wakes it), or with no jobs when the time is up [default 0]"}},
        ["stage", "worker"]),
    ("/boards/{name}/advance", "post"): obj({"attempts": array(ADVANCE_ITEM, MAX_BATCH)},
                                            ["attempts"]),
    ("/boards/{name}/fail", "post"): obj({
        "attempt_id": ID, "error": nullable(TEXT), "exit_code": nullable(INT32),
        "log": nullable(TEXT)}, ["attempt_id"]),
    ("/boards/{name}/release", "post"): obj({"attempt_ids": array(ID, MAX_BATCH)},
                                            ["attempt_ids"]),
    ("/boards/{name}/cancel", "post"): obj({"keys": nullable(array(KEY, MAX_BATCH))}),
    ("/boards/{name}/heartbeat", "post"): obj({
        "worker": NAME, "host": nullable(NAME), "pid": nullable(INT32),
        "allocation": nullable(ALLOCATION_REF),
        "running": nullable(array(ID, MAX_BATCH)),
        "samples": nullable({"type": "object", "additionalProperties": {"type": "object"},
                             "description": "attempt id -> resource sample (other keys "
                                            "are ignored)"}),
        "logs": nullable({"type": "object", "additionalProperties": TEXT,
                          "description": "attempt id -> the tail of its output so far "
                                         "(other keys are ignored)"}),
        "notes": nullable({"type": "object", "additionalProperties": array(NOTE, MAX_NOTES),
                           "maxProperties": MAX_NOTES,
                           "description": "attempt id -> what the job wrote as @event=[name:"
                                          "message], @log=[message], @var=[name:value] lines"}),
        "chunks": nullable({"type": "object", "maxProperties": MAX_BATCH,
                            "additionalProperties": array(LOG_CHUNK, MAX_LOG_PIECES),
                            "description": "attempt id -> what it printed on stdout and "
                                           "stderr since the last heartbeat, in the order it "
                                           "came (live logs; other keys are ignored)"}),
        "resources": nullable({"type": "object"}), "stopped": nullable(BOOL)}, ["worker"]),
}


# The push loop validates a million jobs without a schema library; it
# checks exactly these (tests/unit/test_contract.py holds them together).
PUSH_RULES = {"max_key": KEY["oneOf"][0]["maxLength"], "max_stage": STAGE["maximum"],
              "max_after": MAX_AFTER, "priority": (INT32["minimum"], INT32["maximum"]),
              "max_attempts": (ATTEMPTS_LIMIT["minimum"], ATTEMPTS_LIMIT["maximum"])}

# ------------------------------------------------------- query parameters

INCLUDE = {"type": "string", "pattern": r"^(payload|result)(,(payload|result))*$",
           "description": "extra fields of each job, comma-separated: payload,result"}

EVENT_KINDS = [k.value for k in EventKind]
EVENT_CURSOR = {"type": "string", "pattern": r"^(now|[0-9]{1,18}(-[0-9]{1,18})?)$",
                "description": "a 'cursor' or 'next_cursor' this server gave, or 'now'"}
EVENT_TYPES = {"type": "string", "pattern": "^(%s)(,(%s))*$" % (("|".join(EVENT_KINDS),) * 2),
               "description": "comma-separated kinds: " + ", ".join(EVENT_KINDS)}

QUERIES: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("/boards/{name}/jobs", "post"): [
        {"name": "strict", "in": "query", "required": False,
         "schema": {"type": "boolean", "default": False},
         "description": "refuse the push (409, nothing written) if a key exists already with "
                        "another payload or other 'after' jobs"}],
    ("/boards/{name}/jobs", "get"): [
        {"name": "stage", "in": "query", "required": False, "schema": STAGE},
        {"name": "state", "in": "query", "required": False,
         "schema": {"type": "string", "enum": STATES}},
        {"name": "include", "in": "query", "required": False, "schema": INCLUDE},
        {"name": "cursor", "in": "query", "required": False, "schema": ID},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
    ("/boards/{name}/events", "get"): [
        {"name": "after", "in": "query", "required": False, "schema": EVENT_CURSOR,
         "description": "the 'cursor' of the last event seen, or 'now' (only newer ones); "
                        "absent: from the oldest kept"},
        {"name": "types", "in": "query", "required": False, "schema": EVENT_TYPES},
        {"name": "key", "in": "query", "required": False, "schema": TEXT,
         "description": "one job's events"},
        {"name": "wait", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT, "default": 0},
         "description": "seconds to hold the request while there is no event (long-poll)"},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
    ("/boards/{name}/events/stream", "get"): [
        {"name": "after", "in": "query", "required": False, "schema": EVENT_CURSOR,
         "description": "as for /events; the Last-Event-ID header, when sent, wins"},
        {"name": "types", "in": "query", "required": False, "schema": EVENT_TYPES},
        {"name": "key", "in": "query", "required": False, "schema": TEXT}],
    ("/boards/{name}/logs/{key}", "get"): [
        {"name": "attempt", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": INT32_MAX},
         "description": "which attempt of the job, 1 for its first (the job page's #) "
                        "[default: the latest]"},
        {"name": "stream", "in": "query", "required": False,
         "schema": {"type": "string", "enum": ["both", "out", "err"], "default": "both"},
         "description": "stdout ('out'), stderr ('err') or both, in the order they came"},
        {"name": "follow", "in": "query", "required": False,
         "schema": {"type": "boolean", "default": False},
         "description": "stream the output as it comes until the attempt ends (a job not "
                        "started yet is waited for); a NUL byte at once when there is "
                        "nothing yet and after 15 s of silence keeps proxies from closing "
                        "the connection"},
        {"name": "after", "in": "query", "required": False,
         "schema": {"type": "string", "pattern": r"^\d{1,18}(\.\d{1,18}\.\d{1,18})?$"},
         "description": "only what came after this cursor (the X-Jobserver-Log-Cursor "
                        "header of an earlier read)"}],
}

# --------------------------------------------------------------- answers

LOG_HEADERS = [
    ("X-Jobserver-Attempt", {"type": "integer"}, "the attempt shown (1 = the job's first)"),
    ("X-Jobserver-Attempts", {"type": "integer"}, "the job's attempts so far"),
    ("X-Jobserver-Attempt-Running", BOOL, "whether it was running (not with follow)"),
    ("X-Jobserver-Log-Cursor", TEXT, "read on from here with ?after= (not with follow)"),
    ("X-Jobserver-Log-More", BOOL, "true: more was kept than one answer carries")]

JOB = obj({"key": TEXT, "stage": STAGE, "state": {"type": "string", "enum": STATES},
           "attempts": {"type": "integer", "description": "spent at the current stage"},
           "priority": {"type": "integer"}, "max_attempts": nullable({"type": "integer"}),
           "flagged": BOOL, "entered_at": NUM, "filename": nullable(TEXT),
           "error": nullable(TEXT), "payload": ANY, "result": ANY})
WORKER = obj({"name": TEXT, "host": nullable(TEXT), "pid": nullable({"type": "integer"}),
              "allocation": nullable(TEXT),
              "state": {"type": "string", "enum": ["alive", "lost", "stopped"]},
              "first_seen": NUM, "last_seen": NUM, "running": {"type": "integer"},
              "resources": nullable({"type": "object"})})
PROGRESS = obj({"total": {"type": "integer"}, "done": {"type": "integer"},
                "waiting": {"type": "integer"}, "running": {"type": "integer"},
                "failed": {"type": "integer"}, "cancelled": {"type": "integer"},
                "blocked": {"type": "integer"}, "flagged": {"type": "integer"}, "per_minute": NUM,
                "eta_seconds": nullable(NUM), "progress": NUM,
                "health": {"type": "string", "enum": HEALTH}, "health_reason": TEXT})
COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}
NEIGHBOUR = obj({"key": TEXT, "stage": STAGE, "state": {"type": "string", "enum": STATES}})
STATUS = obj({"board": TEXT, "counts": COUNTS, "total": {"type": "integer"},
              "failed": {"type": "integer"}, "cancelled": {"type": "integer"},
              "blocked": {"type": "integer"}, "max_running": nullable({"type": "integer"}),
              "alive_workers": {"type": "integer"}, "lost_workers": {"type": "integer"},
              "max_attempts": {"type": "integer"}, "auto_requeue": BOOL,
              "stages": array(obj({"stage": STAGE, "lifetime": NUM, "name": nullable(TEXT)})),
              "progress": PROGRESS,
              "orphaned": {**COUNTS, "description": "running stage -> jobs held by lost "
                                                    "workers or overstaying: they will come back"}})

EVENT = obj({"cursor": TEXT, "kind": {"type": "string", "enum": EVENT_KINDS}, "at": NUM,
             "key": nullable(TEXT), "stage": nullable(STAGE), "count": {"type": "integer"},
             "detail": ANY})

SCHEMAS = {
    "Error": obj({"error": TEXT, "message": TEXT, "details": {"type": "object"}},
                 ["error", "message"]),
    "NewJob": NEW_JOB, "Job": JOB, "Worker": WORKER, "BoardStatus": STATUS,
    "Event": EVENT,
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(schema: dict[str, Any], code: str = "200", text: str = "OK") -> dict[str, Any]:
    return {code: {"description": text, "content": {"application/json": {"schema": schema}}}}


ERRORS = {code: {"$ref": f"#/components/responses/{name}"} for code, name in
          [("400", "BadRequest"), ("401", "Unauthorized"), ("403", "Forbidden"),
           ("404", "NotFound"), ("409", "Conflict"), ("413", "TooLarge")]}

BOARD = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "the board's name"}


OPTIONAL_BODIES = {("/boards/{name}/cancel", "post"), ("/boards/{name}/share", "post")}


def _op(path: str, method: str, summary: str, responses: dict[str, Any],
        params: list[dict[str, Any]] | None = None, secured: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**responses, **ERRORS}}
    body = BODIES.get((path, method))
    if body is not None:
        op["requestBody"] = {"required": (path, method) not in OPTIONAL_BODIES,
                             "content": {"application/json": {"schema": body}}}
    query = QUERIES.get((path, method), [])
    op["parameters"] = ([BOARD] if "{name}" in path else []) + (params or []) + query
    if not secured:
        op["security"] = []
    return op


def _paths() -> dict[str, Any]:
    p: dict[str, Any] = {}

    def add(path: str, method: str, *args: Any, **kwargs: Any) -> None:
        p.setdefault(path, {})[method] = _op(path, method, *args, **kwargs)

    add("/boards", "post", "Create a board (needs the server's admin token); answers its "
        "first token", _ok(obj({"board": TEXT, "token": TEXT, "url": TEXT}), "201", "Created"))
    add("/boards", "get", "List boards: all of them with the admin token, a board token's "
        "own otherwise",
        _ok(obj({"boards": array(obj({"name": TEXT, "classic": BOOL, "created_at": NUM,
                                      "jobs": {"type": "integer"}}))})))
    add("/boards/{name}", "get", "Board status: counts, settings, progress, health",
        _ok(_ref("BoardStatus")))
    add("/boards/{name}", "patch", "Change a board's settings: max_running (null: no "
        "cap), max_attempts, auto_requeue", _ok(_ref("BoardStatus")))
    add("/boards/{name}", "delete", "Delete a board with all its jobs (its token or the "
        "admin token)", _ok(obj({"board": TEXT, "deleted_jobs": {"type": "integer"}})))
    add("/boards/{name}/stages/{stage}", "put", "Change a stage's lifetime and/or name",
        _ok(obj({"auto_requeue": BOOL, "max_attempts": {"type": "integer"},
                 "stages": array(obj({"stage": STAGE, "lifetime": NUM,
                                      "name": nullable(TEXT)}))})),
        params=[{"name": "stage", "in": "path", "required": True, "schema": STAGE}])
    add("/boards/{name}/failures", "get", "Failed jobs grouped by the last line of their "
        "error, biggest groups first",
        _ok(obj({"total": {"type": "integer"}, "more_groups": {"type": "integer"},
                 "groups": array(obj({"error": TEXT, "count": {"type": "integer"},
                                      "keys": array(TEXT)}))})))
    add("/boards/{name}/jobs", "post", "Push jobs (idempotent by key: existing keys are left "
        "as they are; nothing is written if one is refused: an unknown 'after' key, a cycle)",
        _ok(obj({"created": {"type": "integer"}, "existing": {"type": "integer"},
                 "changed": {"type": "integer", "description": "existing keys pushed with "
                                                               "another payload or 'after'"},
                 "changed_keys": array(TEXT)})))
    add("/boards/{name}/retry", "post", "Put failed or cancelled jobs back where they last "
        "waited, with a fresh attempt budget", _ok(obj({"retried": {"type": "integer"}})))
    add("/boards/{name}/priority", "post", "Change the priority of waiting or blocked jobs",
        _ok(obj({"changed": {"type": "integer"}})))
    add("/boards/{name}/jobs", "get", "List jobs (cursor pagination, id order)",
        _ok(obj({"jobs": array(_ref("Job")), "next_cursor": nullable(ID)})))
    add("/boards/{name}/jobs/{key}", "get", "One job: payload, result, attempts per stage, "
        "events, output tails",
        _ok({"allOf": [_ref("Job"), obj({
            "attempts_history": array({"type": "object"}),
            "events": {**array({"type": "object"}), "description": "the latest 1,000, "
                       "each with its 'cursor' (see /boards/{name}/events)"},
            "events_total": {"type": "integer"},
            "attempts_per_stage": array(obj({"stage": STAGE, "claims": {"type": "integer"},
                                             "done": {"type": "integer"},
                                             "failures": {"type": "integer"},
                                             "lost": {"type": "integer"}})),
            "log_tail": nullable(TEXT), "log_tails": {"type": "object",
                                                      "additionalProperties": TEXT},
            "after": {**array(NEIGHBOUR), "description": "the first 100 upstream jobs"},
            "after_total": {"type": "integer"},
            "downstream": {**array(NEIGHBOUR), "description": "the first 100 downstream jobs"},
            "downstream_total": {"type": "integer"},
            "blocked_by": {**array(TEXT), "description": "the first 100 upstream jobs not done "
                                                         "yet"}})]}),
        params=[{"name": "key", "in": "path", "required": True, "schema": TEXT}])
    add("/boards/{name}/events", "get", "The board's event log after a cursor, oldest "
        "first (410: the cursor is older than the retention kept)",
        _ok(obj({"events": array(_ref("Event")), "next_cursor": TEXT})))
    add("/boards/{name}/events/stream", "get", "The same as Server-Sent Events: 'id' is the "
        "cursor, 'data' the event; resumes from Last-Event-ID; keep-alive comments",
        {"200": {"description": "text/event-stream: each message's 'data' is an Event",
                 "content": {"text/event-stream": {"schema": obj({
                     "id": TEXT, "event": TEXT, "data": TEXT, "retry": {"type": "integer"}})}}}})
    add("/boards/{name}/claim", "post", "Claim up to n jobs at a stage; they move to the "
        "next (odd) stage, leased to the worker",
        _ok(obj({"jobs": array(obj({"key": TEXT, "payload": ANY, "stage": STAGE,
                                    "attempt_id": ID, "attempt": {"type": "integer"}}))})))
    add("/boards/{name}/advance", "post", "Report claimed jobs done (all or nothing; a "
        "stale attempt answers 409)",
        _ok(obj({"advanced": {"type": "integer"}, "cancelled": {"type": "integer"}})))
    add("/boards/{name}/fail", "post", "Report a claimed job failed: retried until the "
        "job's (or else the board's) max_attempts at its stage, then failed",
        _ok(obj({"outcome": {"type": "string", "enum": ["requeued", "failed", "cancelled"]}})))
    add("/boards/{name}/release", "post", "Give claimed jobs back untouched",
        _ok(obj({"released": {"type": "integer"}})))
    add("/boards/{name}/cancel", "post", "Cancel jobs (all, or the given keys)",
        _ok(obj({"cancelled": {"type": "integer"}})))
    add("/boards/{name}/heartbeat", "post", "A worker is alive: renews its leases, keeps "
        "output tails and live logs; answers attempts it must stop",
        _ok(obj({"cancelled": array(ID), "lost": array(ID)})))
    allocation = obj({
        "id": TEXT, "pool": nullable(TEXT), "scheduler": nullable(TEXT),
        "state": {"type": "string", "enum": ["pending", "running", "ended"]},
        "reason": nullable(TEXT), "nodes": nullable({"type": "integer"}),
        "workers_per_node": nullable({"type": "integer"}), "time_limit_s": nullable(NUM),
        "submitted_at": NUM, "started_at": nullable(NUM), "ended_at": nullable(NUM),
        "workers": {"type": "integer", "description": "alive workers in it"},
        "running": {"type": "integer", "description": "jobs they hold now"},
        "lost_attempts": {"type": "integer", "description": "attempts lost with it"}})
    add("/boards/{name}/allocations/{allocation}", "put", "A pool reports what its scheduler "
        "says of one allocation (pending, running, ended)", _ok(allocation),
        params=[{"name": "allocation", "in": "path", "required": True,
                 "schema": ALLOCATION_ID}])
    add("/boards/{name}/allocations", "get", "The board's allocations, newest first (at most "
        "200), with their workers, jobs held and lost attempts",
        _ok(obj({"allocations": array(allocation)})))
    add("/boards/{name}/jobs/{key}/resources", "get", "A job's resource log: CPU, memory "
        "and run time of its attempts over time",
        _ok(obj({"samples": array(obj({
            "attempt_id": ID, "stage": STAGE, "at": NUM, "host": nullable(TEXT),
            "allocation": nullable(TEXT), "cpu_percent": nullable(NUM),
            "rss_bytes": nullable({"type": "integer"}), "runtime_s": nullable(NUM)}))})),
        params=[{"name": "key", "in": "path", "required": True, "schema": TEXT}])
    add("/boards/{name}/logs/{key}", "get", "A job's live log: what an attempt printed "
        "(kept while it runs, the oldest part dropped past the board's bounds, with a line "
        "saying so), as plain text; follow=1 streams it until the attempt ends",
        {"200": {"description": "the attempt's output as UTF-8 text",
                 "content": {"text/plain": {"schema": {"type": "string"}}},
                 "headers": {name: {"schema": schema, "description": text} for name, schema,
                             text in LOG_HEADERS}}},
        params=[{"name": "key", "in": "path", "required": True, "schema": TEXT}])
    add("/boards/{name}/workers", "get", "The board's workers: alive or lost, last seen, "
        "last resources", _ok(obj({"workers": array(_ref("Worker"))})))
    _accounts(add)
    return p


def _accounts(add: Any) -> None:
    user = obj({"name": TEXT, "admin": BOOL, "created_at": NUM, "password": BOOL,
                "keys": {"type": "integer", "description": "active API keys"}})
    add("/users", "post", "Create a user (the admin token or an admin user's key); answers "
        "their first API key", _ok(obj({"user": TEXT, "admin": BOOL, "key": TEXT}), "201",
                                   "Created"))
    add("/users", "get", "List users (the admin token or an admin user's key)",
        _ok(obj({"users": array(user)})))
    member = obj({"user": TEXT, "role": ROLE, "created_at": NUM})
    add("/boards/{name}/members", "get", "The board's members and their roles (owner)",
        _ok(obj({"members": array(member)})))
    add("/boards/{name}/members", "post", "Give a user a role on the board, or change it "
        "(owner)", _ok(obj({"user": TEXT, "role": ROLE}), "201", "Added (200: role changed)"))
    add("/boards/{name}/members/{user}", "delete", "Remove a member (owner)",
        _ok(obj({"user": TEXT, "removed": BOOL})),
        params=[{"name": "user", "in": "path", "required": True, "schema": USER_NAME}])
    token = obj({"id": ID, "name": TEXT, "role": ROLE, "created_at": NUM,
                 "expires_at": nullable(NUM), "revoked_at": nullable(NUM)})
    add("/boards/{name}/tokens", "post", "A new board token with a role and an optional "
        "expiry (owner); only this answer shows it",
        _ok(obj({"id": ID, "token": TEXT, "role": ROLE, "name": TEXT,
                 "expires_at": nullable(NUM)}), "201", "Created"))
    add("/boards/{name}/tokens", "get", "The board's tokens, revoked ones too (owner; the "
        "secrets are not kept)", _ok(obj({"tokens": array(token)})))
    add("/boards/{name}/tokens/{token_id}", "delete", "Revoke a token or share link (owner)",
        _ok(obj({"id": ID, "revoked": BOOL})),
        params=[{"name": "token_id", "in": "path", "required": True, "schema": ID}])
    add("/boards/{name}/share", "post", "A read-only share link to the board's pages: a "
        "viewer token in the URL (owner; revoke it as a token)",
        _ok(obj({"id": ID, "token": TEXT, "url": TEXT, "expires_at": nullable(NUM)}), "201",
            "Created"))


PATHS = _paths()


def _error_response(text: str) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": _ref("Error")}}}


def spec() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "jobserver API", "version": "1",
                 "description": "The JSON face of the job board. Errors are "
                                "{\"error\", \"message\"} with a 4xx/5xx status."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
            "responses": {name: _error_response(text) for name, text in [
                ("BadRequest", "malformed request: the message names the field"),
                ("Unauthorized", "missing, unknown, revoked or expired token"),
                ("Forbidden", "a role that may not do this, a token of another board, a "
                              "user who is not a member, or a cross-site write"),
                ("NotFound", "no such board or job"),
                ("Conflict", "stale attempt, existing name, or a strict push of changed "
                             "jobs"),
                ("TooLarge", "body, inflated body or payload over its limit")]},
        },
        "paths": PATHS,
    }


def document():
    return jsonify(spec())
