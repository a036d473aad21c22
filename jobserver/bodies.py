"""Request bodies: zlib, gzip or plain JSON, decoded with a size cap."""
from __future__ import annotations

import json
import zlib
from typing import Any

from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

MAX_DECODED = 1 << 30  # 1 GiB of JSON at most, whatever the compressed size


def decompress(raw: bytes) -> bytes:
    """Undo zlib or gzip compression if the body has either header; plain
    bytes pass through."""
    if len(raw) >= 2 and (raw[:2] == b"\x1f\x8b" or (raw[0] & 0x0F == 8 and (raw[0] << 8 | raw[1]) % 31 == 0)):
        d = zlib.decompressobj(wbits=47)  # 32 + 15: zlib or gzip header
        try:
            out = d.decompress(raw, MAX_DECODED)
        except zlib.error as exc:
            raise BadRequest(f"body is not valid zlib/gzip data: {exc}") from None
        if d.unconsumed_tail:
            raise RequestEntityTooLarge(f"decompressed body exceeds {MAX_DECODED} bytes")
        return out
    return raw


def parse_json(raw: bytes) -> Any:
    """The JSON value of a possibly compressed body."""
    data = decompress(raw)
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"body is not JSON (nor zlib/gzip-compressed JSON): {exc}") from None
