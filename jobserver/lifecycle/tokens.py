"""Board tokens: issued with a role and an optional expiry, listed, revoked.
Only a token's SHA-256 is kept."""
from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, select, update

from ..dialect import write_transaction
from ..roles import check_role
from .common import BOARDS, TOKENS, BoardRef, LifecycleError, NotFound, _engine

BOARD_TOKEN_PREFIX = "jsb_"
LAST_EXPIRY = 4102444800  # 2100-01-01 UTC: the latest expires_at


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class BoardGrant:
    """What a board token opens: its board, with its role, until expires_at."""
    board: BoardRef
    role: str
    expires_at: float | None
    token_id: int


def issue_token(board_id: int, name: str = "default", role: str = "owner",
                expires_at: float | None = None) -> str:
    """A new bearer token for the board; only its digest is stored."""
    try:
        check_role(role)
    except ValueError as exc:
        raise LifecycleError(str(exc)) from None
    now = time.time()
    if expires_at is not None and not 0 <= expires_at <= LAST_EXPIRY:
        raise LifecycleError("a token's expiry is at the latest 2100-01-01 (a time past makes "
                             "a token expired already)")
    token = BOARD_TOKEN_PREFIX + secrets.token_urlsafe(30)
    with write_transaction(_engine()) as conn:
        conn.execute(TOKENS.insert().values(board_id=board_id, name=name[:200],
                                            digest=digest(token), created_at=now,
                                            role=role, expires_at=expires_at))
    return token


def token_id_of(board_id: int, token: str) -> int:
    with _engine().connect() as conn:
        return conn.execute(select(TOKENS.c.id).where(TOKENS.c.board_id == board_id,
                                                      TOKENS.c.digest == digest(token))
                            ).scalar_one()


def list_tokens(board_id: int) -> list[dict[str, Any]]:
    with _engine().connect() as conn:
        rows = conn.execute(select(TOKENS.c.id, TOKENS.c.name, TOKENS.c.role,
                                   TOKENS.c.created_at, TOKENS.c.expires_at,
                                   TOKENS.c.revoked_at)
                            .where(TOKENS.c.board_id == board_id).order_by(TOKENS.c.id)).all()
    return [dict(r._mapping) for r in rows]


def revoke_token(board_id: int, token_id: int) -> None:
    with write_transaction(_engine()) as conn:
        n = conn.execute(update(TOKENS).where(TOKENS.c.id == token_id,
                                              TOKENS.c.board_id == board_id,
                                              TOKENS.c.revoked_at.is_(None))
                         .values(revoked_at=time.time())).rowcount
    if not n:
        raise NotFound(f"no active token {token_id} on this board")
    current_app.extensions.get("jobserver_tokens", {}).clear()  # at once in this process


_GRANT_OF_TOKEN = (
    select(BOARDS.c.id, BOARDS.c.name, BOARDS.c.jobix, TOKENS.c.role, TOKENS.c.expires_at,
           TOKENS.c.id.label("token_id"))
    .join(TOKENS, TOKENS.c.board_id == BOARDS.c.id)
    .where(TOKENS.c.digest == bindparam("digest"), TOKENS.c.revoked_at.is_(None))
)


def grant_for_token(token: str) -> BoardGrant | None:
    """What a board token opens, or None (unknown or revoked).  An expired
    token is answered too: the caller says it expired."""
    with _engine().connect() as conn:
        row = conn.execute(_GRANT_OF_TOKEN, {"digest": digest(token)}).first()
    if row is None:
        return None
    return BoardGrant(BoardRef(row.id, row.name, row.jobix), row.role, row.expires_at,
                      row.token_id)


def board_for_token(token: str) -> BoardRef | None:
    """The board a live (unexpired, unrevoked) token opens, or None."""
    grant = grant_for_token(token)
    if grant is None or (grant.expires_at is not None and grant.expires_at <= time.time()):
        return None
    return grant.board
