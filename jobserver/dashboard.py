"""The dashboard: board pages, job detail, lifetimes (HTML), and the JSON
the pages refresh with.  Views only parse, call insights, and render."""
from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

from flask import Blueprint, Response, abort, current_app, jsonify, render_template, request
from werkzeug.exceptions import BadRequest

from . import access, insights, joblogs, lifecycle, pools, queries
from .api.validate import query
from .limits import MAX_PAGE, MAX_STAGE, parse_int

bp = Blueprint("dashboard", __name__)
bp.before_request(access.guard)


@bp.app_template_filter("pct")
def pct(value) -> str:
    """A percentage as every page prints it, here and in live.js's pct():
    one decimal, so a live update never changes how the same figure reads."""
    return f"{float(value or 0):.1f}"


@bp.app_template_filter("duration")
def duration(seconds) -> str:
    """A span as the pools table prints it, here and in dashboard.js's
    fmtDuration(): '45 s', '12 min 5 s', '3 h 20 min'."""
    if seconds is None:
        return ""
    s = max(int(round(float(seconds))), 0)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min" if s % 3600 // 60 else f"{s // 3600} h"


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


@bp.get("/boards/<name>/events/stream")
def event_stream(name: str):
    """The board's event log as Server-Sent Events, for the pages (the
    API's stream, behind the pages' guard instead of a bearer token: a
    browser's EventSource sends no Authorization header)."""
    from .api.events import event_stream as stream
    from .api.validate import query

    board = _board(name)
    headers = {k: v for k, v in request.headers.items() if k in ("Authorization", "Cookie")}
    return stream(board.id, query("/boards/{name}/events/stream"),
                  access.still_sees(current_app._get_current_object(), headers, board.id))


@bp.get("/boards/<name>/logs/<path:key>")
def job_log(name: str, key: str):
    """A job's live log as text for the job page (which polls it with the
    cursor of its last read), with the API route's parameters."""
    board = _board(name)
    q = query("/boards/{name}/logs/{key}")
    return joblogs.text_response(board.id, key, q, joblogs.PAGE_BYTES)


@bp.get("/boards/<name>/lifetimes")
def lifetimes_page(name: str):
    board = _board(name)
    settings = lifecycle.board_settings(board.id)
    return render_template("lifetimes.html", board=board, settings=settings,
                           stages=settings["stages"])


@bp.get("/boards/<name>/jobs/<path:key>/resources.csv")
def job_resources_csv(name: str, key: str):
    """A job's resource log as a CSV download (the samples its workers sent
    with their heartbeats, oldest first)."""
    board = _board(name)
    samples = pools.job_resources(board.id, key)
    if samples is None:
        abort(404, f"no job {key!r} on board {name!r}")
    filename = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{name}-{key}")[:150] + "-resources.csv"
    return Response(_csv(samples), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet would evaluate


def _csv(samples: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The resource log's lines: times in ISO 8601 (UTC); a text cell a
    spreadsheet would read as a formula is quoted with a leading '."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(pools.RESOURCE_COLUMNS)
    for s in samples:
        row = dict(s, at=datetime.fromtimestamp(s["at"], timezone.utc).isoformat(
            timespec="milliseconds"))
        for text in ("host", "allocation"):
            if isinstance(row[text], str) and row[text][:1] in FORMULA_STARTS:
                row[text] = "'" + row[text]
        out.writerow(["" if row[c] is None else row[c] for c in pools.RESOURCE_COLUMNS])
        if buf.tell() >= 65536:  # sent in pieces of 64 KB, not line by line
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()
