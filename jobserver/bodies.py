"""Request bodies: zlib, gzip or plain JSON, decoded with size caps.

The raw body is capped by Flask's MAX_CONTENT_LENGTH (``MAX_BODY_MB``); a
compressed one is inflated in steps and refused as soon as it passes
``MAX_DECODED_MB``, so a decompression bomb costs at most that much memory
before its 413.  A compressed stream cut short is a 400: half a job list is
never written.
"""
from __future__ import annotations

import json
import zlib
from typing import Any

from flask import current_app, has_app_context
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

STEP = 1 << 20  # inflate a megabyte at a time
FLOOR = 16 << 20  # bodies may always inflate to this, whatever their ratio


def max_decoded() -> int:
    mb = current_app.config["MAX_DECODED_MB"] if has_app_context() else 256
    return int(mb * (1 << 20))


def inflate_ratio() -> float:
    return float(current_app.config["MAX_INFLATE_RATIO"]) if has_app_context() else 50.0


def pause() -> None:
    """Let other green threads run (eventlet; nothing under threads)."""
    from .extensions import socketio

    if has_app_context() and current_app.config.get("ASYNC_MODE") == "eventlet":
        socketio.sleep(0)


def _compressed(raw: bytes) -> bool:
    return len(raw) >= 2 and (raw[:2] == b"\x1f\x8b" or (
        raw[0] & 0x0F == 8 and (raw[0] << 8 | raw[1]) % 31 == 0))


def decompress(raw: bytes) -> bytes:
    """Undo zlib or gzip compression if the body has either header; plain
    bytes pass through (they are already within MAX_CONTENT_LENGTH)."""
    if not _compressed(raw):
        return raw
    limit = max_decoded()
    # A job list compresses some 5 to 20 times; a bomb a thousand: refuse
    # one as soon as it inflates past MAX_INFLATE_RATIO times its size
    # (beyond a floor, for small bodies), long before MAX_DECODED_MB.
    ratio_cap = max(FLOOR, int(len(raw) * inflate_ratio()))
    d = zlib.decompressobj(wbits=47)  # 32 + 15: zlib or gzip header
    parts: list[bytes] = []
    size = 0
    data = raw
    try:
        while data:
            chunk = d.decompress(data, STEP)
            size += len(chunk)
            if size > limit:
                raise RequestEntityTooLarge(
                    f"the body inflates to more than {limit >> 20} MB (MAX_DECODED_MB): "
                    "push in smaller requests")
            if size > ratio_cap:
                raise RequestEntityTooLarge(
                    f"the body inflates more than {inflate_ratio():g} times its size "
                    "(MAX_INFLATE_RATIO): a decompression bomb, or data to push in a file")
            parts.append(chunk)
            data = d.unconsumed_tail
            pause()  # other requests get their turn while a big body inflates
        tail = d.flush()
    except zlib.error as exc:
        raise BadRequest(f"body is not valid zlib/gzip data: {exc}") from None
    if not d.eof:
        raise BadRequest("the compressed body is cut short (its stream does not end): "
                         "nothing was written; send it whole")
    if d.unused_data:
        raise BadRequest("the body goes on after its compressed stream ends (several gzip "
                         "members?): nothing was written; send one stream")
    if size + len(tail) > limit:
        raise RequestEntityTooLarge(f"the body inflates to more than {limit >> 20} MB")
    parts.append(tail)
    return b"".join(parts)


def loads(data: bytes | str, what: str = "body") -> Any:
    """json.loads with its failures as a 400 (a value nested too deeply
    for the parser included).  Strings a database cannot store (a NUL, a
    lone surrogate) are refused where they would be stored: the API's
    schemas, the push loop, lifecycle's output tails."""
    try:
        return json.loads(data)
    except RecursionError:
        raise BadRequest(f"{what} is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"{what} is not JSON (nor zlib/gzip-compressed JSON): {exc}") from None


def parse_json(raw: bytes) -> Any:
    """The JSON value of a possibly compressed body."""
    return loads(decompress(raw))
