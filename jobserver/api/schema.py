"""Small validators for JSON request bodies: one clear 400 per mistake."""
from __future__ import annotations

from typing import Any

from flask import request
from werkzeug.exceptions import BadRequest

from ..bodies import decompress, loads, parse_json
from ..limits import INT64_MAX, check_int

_MISSING = object()


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


def get(data: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = _MISSING,
        minimum: int | float | None = None, maximum: int | float | None = None) -> Any:
    """data[name], checked: its type, its bounds; missing -> default or 400."""
    if name not in data or data[name] is None:
        if default is _MISSING:
            raise BadRequest(f"'{name}' is required")
        return default
    value = data[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise BadRequest(f"'{name}' must be {_names(kinds)}")
    if not isinstance(value, kinds):
        if float in kinds and isinstance(value, int):
            value = float(value)
        else:
            raise BadRequest(f"'{name}' must be {_names(kinds)}")
    if isinstance(value, int) and not isinstance(value, bool):
        check_int(value, f"'{name}'")  # 64 bits, whatever the route allows
    if minimum is not None and value < minimum:
        raise BadRequest(f"'{name}' must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise BadRequest(f"'{name}' must be at most {maximum}")
    return value


def int_list(data: dict[str, Any], name: str, max_len: int = 10_000) -> list[int]:
    value = get(data, name, list)
    if len(value) > max_len or not all(type(v) is int and -INT64_MAX <= v <= INT64_MAX
                                       for v in value):
        raise BadRequest(f"'{name}' must be a list of at most {max_len} integers")
    return value


def _names(kinds: tuple[type, ...]) -> str:
    words = {int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "an object", bool: "true or false"}
    return " or ".join(words.get(k, k.__name__) for k in kinds)
