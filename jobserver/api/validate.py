"""Requests read and checked against the API's one description
(api/openapi.py): bodies by its JSON schemas, query strings by its
parameters.  A refusal is one 400 naming the field; nothing is written."""
from __future__ import annotations

import functools
from typing import Any

from flask import request
from jsonschema.exceptions import best_match
from openapi_schema_validator import OAS30Validator
from werkzeug.exceptions import BadRequest

from ..bodies import decompress, loads, parse_json
from ..limits import parse_int
from .openapi import BODIES, QUERIES


def body_object() -> dict[str, Any]:
    data = parse_json(request.get_data())
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


def body_items() -> list[Any]:
    """A JSON array, or JSON lines (one value a line); gzip/zlib accepted."""
    raw = decompress(request.get_data())
    try:
        text = raw.decode("utf-8", errors="strict") if raw else ""
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None
    stripped = text.lstrip()
    if not stripped:
        raise BadRequest("the body is empty: send a JSON array or JSON lines")
    if stripped.startswith("["):
        return loads(text, "the body")
    return [loads(line, f"line {n}") for n, line in enumerate(text.splitlines(), 1)
            if line.strip()]


@functools.lru_cache(maxsize=None)
def _validator(path: str, method: str) -> OAS30Validator:
    return OAS30Validator(BODIES[(path, method)])


def _where(error: Any) -> str:
    parts = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return parts.lstrip(".") or "the body"


def check_body(data: Any, path: str, method: str = "post") -> Any:
    """``data`` if it fits the operation's request schema, else a 400."""
    error = best_match(_validator(path, method).iter_errors(data))
    if error is not None:
        message = error.message if len(error.message) < 300 else error.message[:300] + "..."
        raise BadRequest(f"{_where(error)}: {message}")
    return data


BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def query(path: str, method: str = "get") -> dict[str, Any]:
    """The operation's query parameters, parsed and checked by their schemas
    (absent ones take their default, or None)."""
    out: dict[str, Any] = {}
    for p in QUERIES[(path, method)]:
        schema, raw = p["schema"], request.args.get(p["name"])
        if raw is None:
            out[p["name"]] = schema.get("default")
            continue
        if schema["type"] == "integer":
            out[p["name"]] = parse_int(raw, p["name"], schema["minimum"], schema["maximum"])
            continue
        if schema["type"] == "boolean":
            if raw.lower() not in BOOLEANS:
                raise BadRequest(f"{p['name']}: expected true or false, got {raw[:50]!r}")
            out[p["name"]] = BOOLEANS[raw.lower()]
            continue
        error = best_match(OAS30Validator(schema).iter_errors(raw))
        if error is not None:
            raise BadRequest(f"{p['name']}: {error.message[:300]}")
        out[p["name"]] = raw
    return out
