"""Boards: create one (answers its first token), read its status."""
from __future__ import annotations

from flask import jsonify, request

from .. import insights, lifecycle, queries
from ..limits import check_int
from . import bp
from ..roles import requires
from .auth import admin_or_user, board_for_request, current_grant, is_admin
from .openapi import STAGE
from .validate import body_object, check_body


@bp.post("/boards")
def create_board():
    """The admin token or a user's key (who becomes its owner) creates a
    board; the answer holds its first (owner) token."""
    creator = admin_or_user()
    data = check_body(body_object(), "/boards")
    board = lifecycle.create_board(
        data["name"], [float(m) for m in data.get("lifetimes") or []],
        data.get("stage_names") or [], max_attempts=data.get("max_attempts", 3),
        auto_requeue=data.get("auto_requeue", True), max_running=data.get("max_running"))
    if creator is not None:
        lifecycle.set_member(board.id, creator.id, "owner")
    token = lifecycle.issue_token(board.id, data.get("token_name", "default"))
    resp = jsonify(board=board.name, token=token, url=request.url_root.rstrip("/"))
    resp.status_code = 201
    return resp


@bp.get("/boards")
def list_boards():
    """Every board to the admin token (and an admin user); a user's key sees
    the boards the user is a member of, a board's token its own board."""
    boards = queries.list_boards()
    if not is_admin():
        grant = current_grant()
        if isinstance(grant, lifecycle.UserRef):
            if not grant.admin:
                mine = lifecycle.member_boards(grant.id)
                boards = [b for b in boards if b["id"] in mine]
        else:
            own = board_for_request(None, "read")
            boards = [b for b in boards if b["id"] == own.id]
    return jsonify(boards=[{k: v for k, v in b.items() if k != "id"} for b in boards])


@bp.get("/boards/<name>")
@requires("read")
def board_summary(name: str):
    board = board_for_request(name)
    return _summary(board)


@bp.patch("/boards/<name>")
@requires("settings")
def change_board(name: str):
    """Change a board's settings: max_running, max_attempts, auto_requeue."""
    board = board_for_request(name)
    data = check_body(body_object(), "/boards/{name}", "patch")
    lifecycle.set_board_options(
        board.id, auto_requeue=data.get("auto_requeue"), max_attempts=data.get("max_attempts"),
        max_running=data["max_running"] if "max_running" in data else lifecycle.UNCHANGED)
    return _summary(board)


def _summary(board: lifecycle.BoardRef):
    status = queries.board_status(board.id)
    progress = insights.progress(board.id, status)  # read once for both
    status.pop("by_stage")
    return jsonify(board=board.name, **status, **lifecycle.board_settings(board.id),
                   progress=progress, orphaned=queries.orphaned(board.id))


@bp.delete("/boards/<name>")
@requires("delete")
def delete_board(name: str):
    """Delete a board and all its jobs (an owner, or the admin token)."""
    board = board_for_request(name)
    return jsonify(board=board.name, deleted_jobs=lifecycle.delete_board(board.id))


@bp.get("/boards/<name>/failures")
@requires("read")
def failures(name: str):
    """Failed jobs grouped by error: count and first keys of each."""
    board = board_for_request(name)
    return jsonify(insights.failure_groups(board.id))


@bp.put("/boards/<name>/stages/<int:stage>")
@requires("settings")
def set_stage(name: str, stage: int):
    """Change a stage's lifetime (minutes) and/or name."""
    board = board_for_request(name)
    check_int(stage, "stage", STAGE["minimum"], STAGE["maximum"])
    data = check_body(body_object(), "/boards/{name}/stages/{stage}", "put")
    if data.get("lifetime") is not None:
        lifecycle.set_lifetime(board.id, stage, float(data["lifetime"]))
    if "name" in data:
        lifecycle.set_stage_name(board.id, stage, (data["name"] or "").strip() or None)
    return jsonify(lifecycle.board_settings(board.id))
