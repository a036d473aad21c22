"""Accounts over the API: users (admin), a board's members and tokens
(owner), share links (owner)."""
from __future__ import annotations

import time

from flask import jsonify, request
from werkzeug.exceptions import BadRequest, NotFound

from .. import lifecycle
from ..roles import requires
from . import bp
from .auth import board_for_request, current_grant, is_admin, require_admin
from .validate import body_object, check_body


def _created(**fields):
    resp = jsonify(**fields)
    resp.status_code = 201
    return resp


@bp.post("/users")
def create_user():
    """A new user and their first API key (the admin token or an admin user)."""
    require_admin()
    data = check_body(body_object(), "/users")
    user = lifecycle.create_user(data["name"], admin=bool(data.get("admin")),
                                 password=data.get("password"))
    key = lifecycle.issue_key(user.id, data.get("key_name", "default"))
    return _created(user=user.name, admin=user.admin, key=key)


@bp.get("/users")
def list_users():
    require_admin()
    return jsonify(users=lifecycle.list_users())


def _user(name: str) -> lifecycle.UserRef:
    user = lifecycle.user_by_name(name)
    if user is None:
        raise NotFound(f"no user named {name!r} (an admin creates users: POST /api/v1/users)")
    return user


@bp.get("/boards/<name>/members")
@requires("members")
def list_members(name: str):
    board = board_for_request(name)
    return jsonify(members=lifecycle.list_members(board.id))


@bp.post("/boards/<name>/members")
@requires("members")
def add_member(name: str):
    """Give a user a role on the board (or change their role)."""
    board = board_for_request(name)
    data = check_body(body_object(), "/boards/{name}/members")
    user = _user(data["user"])
    added = lifecycle.set_member(board.id, user.id, data["role"])
    resp = jsonify(user=user.name, role=data["role"])
    resp.status_code = 201 if added else 200
    return resp


@bp.delete("/boards/<name>/members/<user>")
@requires("members")
def remove_member(name: str, user: str):
    board = board_for_request(name)
    lifecycle.remove_member(board.id, _user(user).id)
    return jsonify(user=user, removed=True)


def _expiry(data: dict) -> float | None:
    """expires_in (seconds from now) or expires_at (seconds since the
    epoch), not both; None: never."""
    if "expires_in" in data and "expires_at" in data:
        raise BadRequest("give expires_in or expires_at, not both")
    if data.get("expires_in") is not None:
        return time.time() + float(data["expires_in"])
    if data.get("expires_at") is not None:  # a time past: a token expired already
        return float(data["expires_at"])
    return None


def _within_callers(expires_at: float | None) -> float | None:
    """A token made with an expiring token expires with it, at the latest:
    a week's owner token cannot mint a permanent one."""
    if is_admin():
        return expires_at
    limit = getattr(current_grant(), "expires_at", None)
    if limit is None:
        return expires_at
    return limit if expires_at is None else min(expires_at, limit)


@bp.post("/boards/<name>/tokens")
@requires("tokens")
def create_token(name: str):
    """A new token for the board with a role (and an expiry, if given)."""
    board = board_for_request(name)
    data = check_body(body_object(), "/boards/{name}/tokens")
    expires_at = _within_callers(_expiry(data))
    token = lifecycle.issue_token(board.id, data.get("name", "api"), data["role"], expires_at)
    return _created(id=lifecycle.token_id_of(board.id, token), token=token, role=data["role"],
                    name=data.get("name", "api"), expires_at=expires_at)


@bp.get("/boards/<name>/tokens")
@requires("tokens")
def list_tokens(name: str):
    board = board_for_request(name)
    return jsonify(tokens=lifecycle.list_tokens(board.id))


@bp.delete("/boards/<name>/tokens/<int:token_id>")
@requires("tokens")
def revoke_token(name: str, token_id: int):
    board = board_for_request(name)
    lifecycle.revoke_token(board.id, token_id)
    return jsonify(id=token_id, revoked=True)


@bp.post("/boards/<name>/share")
@requires("tokens")
def create_share_link(name: str):
    """A read-only link to the board's pages: a viewer token in the URL
    (revoke it as any token: DELETE .../tokens/<id>)."""
    board = board_for_request(name)
    data = check_body(body_object() if request.get_data() else {}, "/boards/{name}/share")
    expires_at = _within_callers(_expiry(data))
    token = lifecycle.issue_token(board.id, data.get("name", "share link"), "viewer",
                                  expires_at)
    return _created(id=lifecycle.token_id_of(board.id, token), token=token,
                    url=f"{request.url_root.rstrip('/')}/s/{token}", expires_at=expires_at)
