"""Bearer tokens: which board a request may touch."""
from __future__ import annotations

import hmac
import time

from flask import current_app, request
from werkzeug.exceptions import Forbidden, NotFound, Unauthorized

from .. import lifecycle
from ..lifecycle import BoardRef


def bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def board_for_request(name: str | None) -> BoardRef:
    """The board named in the path, if the request's token opens it (any
    board's token, with ``name`` None)."""
    token = bearer()
    if token is None:
        raise Unauthorized("send 'Authorization: Bearer <token>' (jobserver board create "
                           "prints one; jobserver token create makes more)")
    board = _cached_board(token)
    if board is None:
        raise Unauthorized("unknown or revoked token")
    if name is not None and board.name != name:
        if lifecycle.board_by_name(name) is None:
            raise NotFound(f"no board named {name!r}")
        raise Forbidden(f"this token is for board {board.name!r}, not {name!r}")
    return board


TOKEN_TTL = 1.0  # seconds another process may remember a token after its revocation


def _cached_board(token: str) -> BoardRef | None:
    """board_for_token, remembered for TOKEN_TTL seconds per process (a
    bounded map: cleared when it passes 1,000 tokens)."""
    cache: dict[str, tuple[float, BoardRef]] = current_app.extensions.setdefault(
        "jobserver_tokens", {})
    now = time.monotonic()
    hit = cache.get(token)
    if hit is not None and hit[0] > now:
        return hit[1]
    board = lifecycle.board_for_token(token)
    if board is not None:
        if len(cache) >= 1000:
            cache.clear()
        cache[token] = (now + TOKEN_TTL, board)
    else:
        cache.pop(token, None)
    return board


def is_admin() -> bool:
    """The request carries the server's admin token (never, if none is set)."""
    admin = current_app.config.get("ADMIN_TOKEN") or ""
    token = bearer()
    return bool(admin and token and hmac.compare_digest(token.encode(), admin.encode()))


def board_or_admin(name: str) -> BoardRef:
    """The named board, if the request holds its token or the admin token."""
    if is_admin():
        board = lifecycle.board_by_name(name)
        if board is None:
            raise NotFound(f"no board named {name!r}")
        return board
    return board_for_request(name)


def require_admin() -> None:
    """Creating boards over the API needs the admin token: closed by default."""
    if not current_app.config.get("ADMIN_TOKEN"):
        raise Forbidden("creating boards over the API is off on this server: create one with "
                        "`jobserver board create NAME` where the server runs, or set "
                        "JOBSERVER_ADMIN_TOKEN there and send it as 'Authorization: Bearer <token>'")
    if not is_admin():
        raise Unauthorized("creating a board needs the server's admin token "
                           "(JOBSERVER_ADMIN_TOKEN) as 'Authorization: Bearer <token>'")
