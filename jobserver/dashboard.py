"""The dashboard: board pages, job detail, lifetimes (HTML), and the JSON
the pages refresh with.  Views only parse, call insights, and render."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, render_template, request
from werkzeug.exceptions import BadRequest

from . import access, insights, lifecycle, queries
from .limits import MAX_PAGE, MAX_STAGE, parse_int

bp = Blueprint("dashboard", __name__)
bp.before_request(access.guard)


@bp.app_template_filter("pct")
def pct(value) -> str:
    """A percentage as every page prints it, here and in live.js's pct():
    one decimal, so a live update never changes how the same figure reads."""
    return f"{float(value or 0):.1f}"


def _board(name: str) -> lifecycle.BoardRef:
    board = lifecycle.board_by_name(name)
    if board is None:
        abort(404, f"no board named {name!r}")
    return board


def _table_args() -> dict:
    args = request.args
    stage = None if args.get("stage") in (None, "") else parse_int(args["stage"], "stage", 0,
                                                                    MAX_STAGE)
    page = parse_int(args.get("page") or "1", "page", 1, MAX_PAGE)
    state = args.get("state") or None
    if state is not None and state not in queries.STATUSES:
        raise BadRequest(f"state must be one of {', '.join(queries.STATUSES)}")
    sort = args.get("sort") or "id"
    if sort not in queries.SORTS:
        raise BadRequest(f"sort must be one of {', '.join(queries.SORTS)}")
    prefix = (args.get("key") or "")[:200].replace("\x00", "")
    return {"stage": stage, "state": state, "key_prefix": prefix or None,
            "sort": sort, "page": page, "per_page": current_app.config["PAGE_SIZE"]}


@bp.get("/boards/<name>")
def board_page(name: str):
    board = _board(name)
    filters = _table_args()
    return render_template("board.html", board=board, data=insights.live_payload(board.id),
                           table=queries.job_table(board.id, **filters), filters=filters,
                           sorts=list(queries.SORTS), states=queries.STATUSES)


@bp.get("/boards/<name>/summary.json")
def board_summary(name: str):
    return jsonify(insights.live_payload(_board(name).id))


@bp.get("/boards/<name>/jobs.json")
def board_jobs(name: str):
    board = _board(name)
    return jsonify(queries.job_table(board.id, **_table_args()))


@bp.get("/boards/<name>/jobs/<path:key>")
def job_page(name: str, key: str):
    board = _board(name)
    job = insights.job_history(board.id, key)
    if job is None:
        abort(404, f"no job {key!r} on board {name!r}")
    return render_template("job.html", board=board, job=job)


@bp.get("/boards/<name>/lifetimes")
def lifetimes_page(name: str):
    board = _board(name)
    settings = lifecycle.board_settings(board.id)
    return render_template("lifetimes.html", board=board, settings=settings,
                           stages=settings["stages"])
