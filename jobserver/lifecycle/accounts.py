"""Accounts: users, their API keys (only digests kept), their passwords
(werkzeug.security's scrypt), and their roles on boards (members)."""
from __future__ import annotations

import functools
import re
import secrets
import time
import threading
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import delete, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from ..dialect import write_transaction
from ..extensions import socketio
from ..roles import check_role
from .common import API_KEYS, BOARDS, MEMBERS, USERS, Conflict, LifecycleError, NotFound, _engine
from .tokens import digest

USER_KEY_PREFIX = "jsu_"
USER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
MAX_PASSWORD = 1000  # characters: hashing a longer one is work a client should not cause


@functools.lru_cache(maxsize=1)
def _no_password() -> str:
    """A hash that matches no password: checked against when the user is
    unknown or has none, so that a login takes as long either way (made at
    the first login, not at every start of a command)."""
    return generate_password_hash(secrets.token_hex(16), method="scrypt")


@dataclass(frozen=True)
class UserRef:
    id: int
    name: str
    admin: bool


def _user_of(row: Any) -> UserRef:
    return UserRef(row.id, row.name, bool(row.admin))


def _hash(password: str) -> str:
    if not password or len(password) > MAX_PASSWORD:
        raise LifecycleError(f"a password is 1 to {MAX_PASSWORD} characters")
    return generate_password_hash(password, method="scrypt")


def create_user(name: str, admin: bool = False, password: str | None = None) -> UserRef:
    if not USER_NAME_RE.match(name or ""):
        raise LifecycleError("a user name is 1-100 letters, digits, '.', '_', '@' or '-', "
                             "starting with a letter or digit")
    pw_hash = _hash(password) if password is not None else None
    with write_transaction(_engine()) as conn:
        if conn.execute(select(USERS.c.id).where(USERS.c.name == name)).first():
            raise Conflict(f"a user named {name!r} exists already")
        user_id = conn.execute(USERS.insert().values(
            name=name, admin=admin, password_hash=pw_hash, created_at=time.time())
            .returning(USERS.c.id)).scalar_one()
    return UserRef(user_id, name, admin)


def set_password(user_id: int, password: str | None) -> None:
    """Set (or, with None, remove) a user's dashboard password; sessions
    opened with the old one end."""
    pw_hash = _hash(password) if password is not None else None
    with write_transaction(_engine()) as conn:
        conn.execute(update(USERS).where(USERS.c.id == user_id).values(password_hash=pw_hash))


def user_by_name(name: str) -> UserRef | None:
    if "\x00" in name:
        return None
    with _engine().connect() as conn:
        row = conn.execute(select(USERS.c.id, USERS.c.name, USERS.c.admin)
                           .where(USERS.c.name == name)).first()
    return _user_of(row) if row else None


def list_users() -> list[dict[str, Any]]:
    with _engine().connect() as conn:
        rows = conn.execute(select(USERS.c.id, USERS.c.name, USERS.c.admin, USERS.c.created_at,
                                   USERS.c.password_hash.is_not(None).label("password"))
                            .order_by(USERS.c.name)).all()
        counts: dict[int, int] = {}
        for (uid,) in conn.execute(select(API_KEYS.c.user_id)
                                   .where(API_KEYS.c.revoked_at.is_(None))).all():
            counts[uid] = counts.get(uid, 0) + 1
    return [{"name": r.name, "admin": bool(r.admin), "created_at": r.created_at,
             "password": bool(r.password), "keys": counts.get(r.id, 0)} for r in rows]


# scrypt takes about 0.1 s of CPU: at most two checks at once, and under
# eventlet in a real thread (the one OS thread serves every claim meanwhile)
_LOGINS = threading.BoundedSemaphore(2)


def _checked(stored: str, password: str) -> bool:
    if socketio.async_mode == "eventlet":
        from eventlet import tpool

        return tpool.execute(check_password_hash, stored, password)
    return check_password_hash(stored, password)


def check_login(name: str, password: str) -> tuple[UserRef, str] | None:
    """The user and their password hash if ``password`` is theirs, else None."""
    with _engine().connect() as conn:
        row = conn.execute(select(USERS.c.id, USERS.c.name, USERS.c.admin,
                                  USERS.c.password_hash)
                           .where(USERS.c.name == name.replace("\x00", ""))).first()
    stored = row.password_hash if row is not None and row.password_hash else _no_password()
    with _LOGINS:
        ok = _checked(stored, password[:MAX_PASSWORD])
    if row is None or not row.password_hash or not ok:
        return None
    return _user_of(row), row.password_hash


def session_user(user_id: int) -> tuple[UserRef, str | None] | None:
    """A logged-in user afresh (still there, still admin?) and their hash."""
    with _engine().connect() as conn:
        row = conn.execute(select(USERS.c.id, USERS.c.name, USERS.c.admin,
                                  USERS.c.password_hash).where(USERS.c.id == user_id)).first()
    return (_user_of(row), row.password_hash) if row else None


# ------------------------------------------------------------------ keys

def issue_key(user_id: int, name: str = "default") -> str:
    key = USER_KEY_PREFIX + secrets.token_urlsafe(30)
    with write_transaction(_engine()) as conn:
        conn.execute(API_KEYS.insert().values(user_id=user_id, name=name[:200],
                                              digest=digest(key), created_at=time.time()))
    return key


def list_keys(user_id: int) -> list[dict[str, Any]]:
    with _engine().connect() as conn:
        rows = conn.execute(select(API_KEYS.c.id, API_KEYS.c.name, API_KEYS.c.created_at,
                                   API_KEYS.c.revoked_at)
                            .where(API_KEYS.c.user_id == user_id).order_by(API_KEYS.c.id)).all()
    return [dict(r._mapping) for r in rows]


def revoke_key(user_id: int, key_id: int) -> None:
    with write_transaction(_engine()) as conn:
        n = conn.execute(update(API_KEYS).where(API_KEYS.c.id == key_id,
                                                API_KEYS.c.user_id == user_id,
                                                API_KEYS.c.revoked_at.is_(None))
                         .values(revoked_at=time.time())).rowcount
    if not n:
        raise NotFound(f"no active key {key_id} of this user")
    current_app.extensions.get("jobserver_tokens", {}).clear()  # at once in this process


def user_for_key(key: str) -> UserRef | None:
    """The user an API key belongs to, or None (unknown or revoked)."""
    with _engine().connect() as conn:
        row = conn.execute(select(USERS.c.id, USERS.c.name, USERS.c.admin)
                           .join(API_KEYS, API_KEYS.c.user_id == USERS.c.id)
                           .where(API_KEYS.c.digest == digest(key),
                                  API_KEYS.c.revoked_at.is_(None))).first()
    return _user_of(row) if row else None


# --------------------------------------------------------------- members

def set_member(board_id: int, user_id: int, role: str) -> bool:
    """Give a user a role on a board (a new member, or a new role).
    Returns True if the user was not a member yet."""
    try:
        check_role(role)
    except ValueError as exc:
        raise LifecycleError(str(exc)) from None
    with write_transaction(_engine()) as conn:
        n = conn.execute(update(MEMBERS).where(MEMBERS.c.board_id == board_id,
                                               MEMBERS.c.user_id == user_id)
                         .values(role=role)).rowcount
        if not n:
            conn.execute(MEMBERS.insert().values(board_id=board_id, user_id=user_id, role=role,
                                                 created_at=time.time()))
    current_app.extensions.get("jobserver_members", {}).clear()
    return not n


def remove_member(board_id: int, user_id: int) -> None:
    with write_transaction(_engine()) as conn:
        n = conn.execute(delete(MEMBERS).where(MEMBERS.c.board_id == board_id,
                                               MEMBERS.c.user_id == user_id)).rowcount
    if not n:
        raise NotFound("this user is not a member of this board")
    current_app.extensions.get("jobserver_members", {}).clear()


def list_members(board_id: int) -> list[dict[str, Any]]:
    with _engine().connect() as conn:
        rows = conn.execute(select(USERS.c.name.label("user"), MEMBERS.c.role,
                                   MEMBERS.c.created_at)
                            .join(USERS, USERS.c.id == MEMBERS.c.user_id)
                            .where(MEMBERS.c.board_id == board_id).order_by(USERS.c.name)).all()
    return [dict(r._mapping) for r in rows]


def member_role(board_id: int, user_id: int) -> str | None:
    with _engine().connect() as conn:
        return conn.execute(select(MEMBERS.c.role).where(MEMBERS.c.board_id == board_id,
                                                         MEMBERS.c.user_id == user_id)).scalar()


def member_boards(user_id: int) -> set[int]:
    """The ids of the boards the user is a member of."""
    with _engine().connect() as conn:
        return set(conn.execute(select(MEMBERS.c.board_id).join(
            BOARDS, BOARDS.c.id == MEMBERS.c.board_id).where(MEMBERS.c.user_id == user_id)
        ).scalars())
