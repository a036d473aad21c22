"""Every input is bounded: the limits in one place, and the one parser of
integers that come from a client (path, query, header or body)."""
from __future__ import annotations

from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

INT64_MAX = 2**63 - 1  # what the database stores: anything larger is refused first
MAX_STAGE = 10_000  # stage numbers a board may use (pages list only those that exist)
MAX_PAGE = 1_000_000  # pages of a job table


def parse_int(text: str | None, what: str, minimum: int = 0, maximum: int = INT64_MAX) -> int:
    """An integer from client text within [minimum, maximum], or a 400 that
    names it.  Digits are counted before converting, so a 100,000-digit
    number costs nothing."""
    raw = (text or "").strip()
    if len(raw) > 20:
        raise BadRequest(f"{what} must be an integer from {minimum} to {maximum}, "
                         f"got {len(raw)} characters")
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{what} must be an integer, got {raw[:40]!r}") from None
    check_int(value, what, minimum, maximum)
    return value


def check_int(value: int, what: str, minimum: int = -INT64_MAX - 1,
              maximum: int = INT64_MAX) -> int:
    """``value`` within bounds (64 bits at most), or a 400 that names it."""
    if not minimum <= value <= maximum:
        raise BadRequest(f"{what} must be from {minimum} to {maximum}, got "
                         f"{value if abs(value) < 10**30 else 'a larger number'}")
    return value


def payload_too_large(key: str, size: int, limit: int) -> RequestEntityTooLarge:
    return RequestEntityTooLarge(
        f"job {key}: its payload is {size:,} bytes of JSON, more than MAX_PAYLOAD_KB "
        f"({limit >> 10} KB): keep large data in files and put their paths in the payload")


def max_payload() -> int:
    from flask import current_app

    return int(current_app.config["MAX_PAYLOAD_KB"] * 1024)


def storable(text: str) -> bool:
    """Whether UTF-8 can encode ``text`` (JSON may spell a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
