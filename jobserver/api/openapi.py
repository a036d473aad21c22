"""The OpenAPI 3 document of /api/v1 (served at /api/v1/openapi.json)."""
from __future__ import annotations

from typing import Any

from flask import jsonify

from ..models import Status


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _ok(schema: dict[str, Any], code: str = "200", text: str = "OK") -> dict[str, Any]:
    return {code: {"description": text, "content": {"application/json": {"schema": schema}}}}


ERRORS = {code: {"$ref": f"#/components/responses/{name}"} for code, name in
          [("400", "BadRequest"), ("401", "Unauthorized"), ("403", "Forbidden"),
           ("404", "NotFound"), ("409", "Conflict")]}

BOARD = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "the board's name"}


def _op(summary: str, responses: dict[str, Any], body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None, secured: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**responses, **ERRORS}}
    if body is not None:
        op["requestBody"] = body
    op["parameters"] = [BOARD, *(params or [])] if secured else (params or [])
    if not secured:
        op["security"] = []
    return op


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


STATES = [s.value for s in Status]
HEALTH = ("idle", "healthy", "attention", "stalled", "done", "failed")
INT = {"type": "integer"}
NUM = {"type": "number"}
STR = {"type": "string"}
ANY: dict[str, Any] = {}

SCHEMAS = {
    "Error": _obj({"error": STR, "message": STR, "details": {"type": "object"}},
                  ["error", "message"]),
    "NewJob": _obj({"key": {"type": "string", "maxLength": 200}, "payload": ANY,
                    "stage": {"type": "integer", "minimum": 0}}, ["key"]),
    "ClaimedJob": _obj({"key": STR, "payload": ANY, "stage": INT, "attempt_id": INT,
                        "attempt": INT}),
    "Job": _obj({"key": STR, "stage": INT, "state": {"type": "string", "enum": STATES},
                 "attempts": INT, "flagged": {"type": "boolean"}, "entered_at": NUM,
                 "filename": {"type": "string", "nullable": True},
                 "error": {"type": "string", "nullable": True}}),
    "Worker": _obj({"name": STR, "host": {"type": "string", "nullable": True},
                    "pid": {"type": "integer", "nullable": True},
                    "state": {"type": "string", "enum": ["alive", "lost", "stopped"]},
                    "first_seen": NUM, "last_seen": NUM, "running": INT,
                    "resources": {"type": "object", "nullable": True}}),
}


def _error_response(text: str) -> dict[str, Any]:
    return {"description": text,
            "content": {"application/json": {"schema": _ref("Error")}}}


PATHS: dict[str, Any] = {
    "/boards": {"post": _op(
        "Create a board; answers its first token",
        _ok(_obj({"board": STR, "token": STR, "url": STR}), "201", "Created"),
        _body(_obj({"name": STR, "lifetimes": {"type": "array", "items": NUM},
                    "stage_names": {"type": "array", "items": STR},
                    "max_attempts": {"type": "integer", "minimum": 1},
                    "auto_requeue": {"type": "boolean"}, "token_name": STR}, ["name"])),
        secured=False)},
    "/boards": {"get": _op(
        "List boards: all of them with the admin token (or on a server without one), "
        "a board token's own otherwise",
        _ok(_obj({"boards": {"type": "array", "items": _obj(
            {"name": STR, "classic": {"type": "boolean"}, "created_at": NUM, "jobs": INT})}})),
        secured=False)},
    "/boards/{name}/failures": {"get": _op(
        "Failed jobs grouped by the last line of their error, biggest groups first",
        _ok(_obj({"total": INT, "more_groups": INT, "groups": {"type": "array", "items": _obj(
            {"error": STR, "count": INT, "keys": {"type": "array", "items": STR}})}})))},
    "/boards/{name}": {"delete": _op(
        "Delete a board with all its jobs (its token or the admin token)",
        _ok(_obj({"board": STR, "deleted_jobs": INT}))), "get": _op(
        "Board status: counts per stage, failed jobs, workers",
        _ok(_obj({"board": STR, "counts": {"type": "object",
                                           "additionalProperties": INT},
                  "total": INT, "failed": INT, "cancelled": INT, "alive_workers": INT,
                  "lost_workers": INT, "max_attempts": INT,
                  "auto_requeue": {"type": "boolean"},
                  "stages": {"type": "array", "items": _obj(
                      {"stage": INT, "lifetime": NUM,
                       "name": {"type": "string", "nullable": True}})},
                  "orphaned": {"type": "object", "additionalProperties": INT,
                               "description": "running stage -> jobs held by lost workers "
                                              "or overstaying: they will come back"},
                  "progress": _obj({
                      "total": INT, "done": INT, "waiting": INT, "running": INT, "failed": INT,
                      "cancelled": INT, "flagged": INT, "per_minute": NUM,
                      "eta_seconds": {"type": "number", "nullable": True}, "progress": NUM,
                      "health": {"type": "string", "enum": list(HEALTH)},
                      "health_reason": STR})})))},
    "/boards/{name}/jobs": {
        "post": _op("Push jobs (JSON array or JSON lines, gzip accepted; idempotent by key)",
                    _ok(_obj({"created": INT, "existing": INT})),
                    _body({"type": "array", "items": _ref("NewJob")})),
        "get": _op("List jobs (cursor pagination)",
                   _ok(_obj({"jobs": {"type": "array", "items": _ref("Job")},
                             "next_cursor": {"type": "integer", "nullable": True}})),
                   params=[{"name": n, "in": "query", "required": False, "schema": s}
                           for n, s in [("stage", INT),
                                        ("state", {"type": "string", "enum": STATES}),
                                        ("include", {"type": "string",
                                                     "description": "payload,result"}),
                                        ("cursor", INT),
                                        ("limit", {"type": "integer", "minimum": 1,
                                                   "maximum": 1000})]])},
    "/boards/{name}/jobs/{key}": {"get": _op(
        "One job: payload, attempts, events, log tail",
        _ok({"allOf": [_ref("Job"), _obj({"payload": ANY, "result": ANY,
                                          "attempts_history": {"type": "array",
                                                               "items": {"type": "object"}},
                                          "events": {"type": "array",
                                                     "items": {"type": "object"}},
                                          "log_tail": {"type": "string", "nullable": True}})]}),
        params=[{"name": "key", "in": "path", "required": True, "schema": STR}])},
    "/boards/{name}/claim": {"post": _op(
        "Claim up to n jobs at a stage; they move to the next (odd) stage, leased to the worker",
        _ok(_obj({"jobs": {"type": "array", "items": _ref("ClaimedJob")}})),
        _body(_obj({"stage": {"type": "integer", "minimum": 0},
                    "n": {"type": "integer", "minimum": 1, "maximum": 1000},
                    "worker": STR, "to_stage": INT, "host": STR, "pid": INT},
                   ["stage", "worker"])))},
    "/boards/{name}/advance": {"post": _op(
        "Report claimed jobs done (all or nothing; a stale attempt answers 409)",
        _ok(_obj({"advanced": INT, "cancelled": INT})),
        _body(_obj({"attempts": {"type": "array", "items": _obj(
            {"attempt_id": INT, "to_stage": INT, "result": ANY, "filename": STR, "log": STR},
            ["attempt_id"])}}, ["attempts"])))},
    "/boards/{name}/fail": {"post": _op(
        "Report a claimed job failed: retried until max_attempts, then failed",
        _ok(_obj({"outcome": {"type": "string", "enum": ["requeued", "failed", "cancelled"]}})),
        _body(_obj({"attempt_id": INT, "error": STR, "exit_code": INT, "log": STR},
                   ["attempt_id"])))},
    "/boards/{name}/release": {"post": _op(
        "Give claimed jobs back untouched",
        _ok(_obj({"released": INT})),
        _body(_obj({"attempt_ids": {"type": "array", "items": INT}}, ["attempt_ids"])))},
    "/boards/{name}/cancel": {"post": _op(
        "Cancel jobs (all, or the given keys)",
        _ok(_obj({"cancelled": INT})),
        _body(_obj({"keys": {"type": "array", "items": STR}}), required=False))},
    "/boards/{name}/heartbeat": {"post": _op(
        "A worker is alive: renews its leases; answers attempts it must stop",
        _ok(_obj({"cancelled": {"type": "array", "items": INT},
                  "lost": {"type": "array", "items": INT}})),
        _body(_obj({"worker": STR, "host": STR, "pid": INT,
                    "running": {"type": "array", "items": INT},
                    "logs": {"type": "object", "additionalProperties": STR,
                             "description": "attempt id -> the tail of its output so far"},
                    "samples": {"type": "object", "additionalProperties": {"type": "object"}},
                    "resources": {"type": "object"}, "stopped": {"type": "boolean"}},
                   ["worker"])))},
    "/boards/{name}/workers": {"get": _op(
        "The board's workers: alive or lost, last seen, last resources",
        _ok(_obj({"workers": {"type": "array", "items": _ref("Worker")}})))},
}


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
                ("BadRequest", "malformed request"), ("Unauthorized", "missing or bad token"),
                ("Forbidden", "token of another board"), ("NotFound", "no such board or job"),
                ("Conflict", "stale attempt or existing name")]},
        },
        "paths": PATHS,
    }


def document():
    return jsonify(spec())
