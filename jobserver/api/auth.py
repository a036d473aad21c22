"""Bearer tokens: who a request is, and what it may do on which board.

Three kinds of bearer: the server's admin token (everything, every board),
a board token (its board, with its role, until it expires) and a user's API
key (the boards the user is a member of, with the member's role; an admin
user: every board).  Each board route declares its action with
``roles.requires``; ``board_for_request`` checks it against the role
(jobserver/roles.py holds the table).
"""
from __future__ import annotations

import hmac
import time
from datetime import datetime, timezone
from typing import Union

from flask import current_app, request
from werkzeug.exceptions import Forbidden, NotFound, Unauthorized

from .. import lifecycle
from ..lifecycle import BoardGrant, BoardRef, UserRef
from ..roles import ACTIONS, may, roles_that_may

Grant = Union[BoardGrant, UserRef]


def bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def declared_action() -> str | None:
    """The action the route being served declares (roles.requires)."""
    view = current_app.view_functions.get(request.endpoint or "")
    return getattr(view, "required_action", None)


def board_for_request(name: str | None, action: str | None = None) -> BoardRef:
    """The board named in the path, if the request's bearer may do the
    route's declared action there (``action`` overrides it); with ``name``
    None, the board of a board token."""
    action = action or declared_action()
    if action is None:  # fail closed: a board route must say what it does
        raise Forbidden("this route declares no role (jobserver.roles.requires): refused")
    if is_admin() and name is not None:
        return _named(name)
    grant = current_grant()
    if isinstance(grant, UserRef):
        if name is None:
            raise Forbidden("a user's key names its board in the path")
        board = _named(name)
        role = "owner" if grant.admin else _cached_member_role(board.id, grant.id)
        if role is None:
            raise Forbidden(f"user {grant.name!r} is not a member of board {name!r} "
                            "(its owner adds members: POST /api/v1/boards/<name>/members)")
        who = f"user {grant.name!r} ({role} of {name!r})"
    else:
        board, role = grant.board, grant.role
        if name is not None and board.name != name:
            if lifecycle.board_by_name(name) is None:
                raise NotFound(f"no board named {name!r}")
            raise Forbidden(f"this token is for board {board.name!r}, not {name!r}")
        who = f"a {role} token"
    if not may(role, action):
        raise Forbidden(f"{who} may not {ACTIONS[action]} on this board: that needs the "
                        f"role {' or '.join(roles_that_may(action))}")
    return board


def _named(name: str) -> BoardRef:
    board = lifecycle.board_by_name(name)
    if board is None:
        raise NotFound(f"no board named {name!r}")
    return board


def current_grant() -> Grant:
    """The board token or user key the request carries; 401 if none, an
    unknown, revoked or expired one."""
    token = bearer()
    if token is None:
        raise Unauthorized("send 'Authorization: Bearer <token>' (jobserver board create "
                           "prints one; jobserver token create makes more)")
    grant = cached_grant(token)
    if grant is None:
        raise Unauthorized("unknown or revoked token")
    if isinstance(grant, BoardGrant) and expired(grant):
        when = datetime.fromtimestamp(grant.expires_at or 0, timezone.utc)
        raise Unauthorized(f"this token expired at {when:%Y-%m-%d %H:%M:%S} UTC: ask the "
                           "board's owner for a new one")
    return grant


def expired(grant: BoardGrant) -> bool:
    return grant.expires_at is not None and grant.expires_at <= time.time()


TOKEN_TTL = 1.0  # seconds another process may remember a token after its revocation


def cached_grant(token: str) -> Grant | None:
    """What a token is (a board token's grant or a key's user), remembered
    for TOKEN_TTL seconds per process (a bounded map: cleared when it passes
    1,000 tokens).  Expiry is checked at each use, not cached."""
    cache: dict[str, tuple[float, Grant]] = current_app.extensions.setdefault(
        "jobserver_tokens", {})
    now = time.monotonic()
    hit = cache.get(token)
    if hit is not None and hit[0] > now:
        return hit[1]
    grant: Grant | None
    if token.startswith(lifecycle.accounts.USER_KEY_PREFIX):
        grant = lifecycle.user_for_key(token)
    else:
        grant = lifecycle.grant_for_token(token)
    if grant is not None:
        if len(cache) >= 1000:
            cache.clear()
        cache[token] = (now + TOKEN_TTL, grant)
    else:
        cache.pop(token, None)
    return grant


def _cached_member_role(board_id: int, user_id: int) -> str | None:
    """member_role, remembered for TOKEN_TTL seconds per process."""
    cache: dict[tuple[int, int], tuple[float, str | None]] = (
        current_app.extensions.setdefault("jobserver_members", {}))
    now = time.monotonic()
    hit = cache.get((board_id, user_id))
    if hit is not None and hit[0] > now:
        return hit[1]
    role = lifecycle.member_role(board_id, user_id)
    if len(cache) >= 10_000:
        cache.clear()
    cache[(board_id, user_id)] = (now + TOKEN_TTL, role)
    return role


def is_admin() -> bool:
    """The request carries the server's admin token (never, if none is set)."""
    admin = current_app.config.get("ADMIN_TOKEN") or ""
    token = bearer()
    return bool(admin and token and hmac.compare_digest(token.encode(), admin.encode()))


def board_or_admin(name: str) -> BoardRef:
    """(Kept for callers: board_for_request lets the admin token in.)"""
    return board_for_request(name)


def admin_or_user() -> UserRef | None:
    """Creating boards over the API: the admin token (None), or any user's
    key (the user, who becomes the board's owner)."""
    if is_admin():
        return None
    token = bearer()
    if token and token.startswith(lifecycle.accounts.USER_KEY_PREFIX):
        grant = current_grant()
        assert isinstance(grant, UserRef)
        return grant
    if not current_app.config.get("ADMIN_TOKEN"):
        raise Forbidden("creating boards over the API needs a user's key (jobserver user "
                        "create NAME) or the server's admin token (JOBSERVER_ADMIN_TOKEN); "
                        "or run `jobserver board create NAME` where the server runs")
    raise Unauthorized("creating a board needs a user's key or the server's admin token "
                       "(JOBSERVER_ADMIN_TOKEN) as 'Authorization: Bearer <token>'")


def require_admin() -> UserRef | None:
    """The admin token (None) or an admin user's key (that user); else 401/403."""
    if is_admin():
        return None
    if bearer() is None:
        raise Unauthorized("this needs the server's admin token or an admin user's key as "
                           "'Authorization: Bearer <token>'")
    grant = current_grant()
    if isinstance(grant, UserRef) and grant.admin:
        return grant
    raise Forbidden("this needs the server's admin token or an admin user's key")


def still_may(token: str, board: BoardRef, action: str) -> bool:
    """Whether ``token`` may still do ``action`` on the board: asked again
    while a stream it opened runs (a revoked or expired token, a removed
    member, ends it).  Needs no request."""
    admin = current_app.config.get("ADMIN_TOKEN") or ""
    if admin and hmac.compare_digest(token.encode(), admin.encode()):
        return True
    grant = cached_grant(token)
    if grant is None:
        return False
    if isinstance(grant, UserRef):
        role = "owner" if grant.admin else _cached_member_role(board.id, grant.id)
    elif expired(grant) or grant.board.id != board.id:
        return False
    else:
        role = grant.role
    return role is not None and may(role, action)
