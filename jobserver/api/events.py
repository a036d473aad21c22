"""The board's event log: read after a cursor (long-poll), or follow it as
Server-Sent Events (lifecycle/events.py says what the cursor promises)."""
from __future__ import annotations

from typing import Any, Callable

from flask import Response, current_app, jsonify, request
from werkzeug.exceptions import NotFound

from .. import follow, queries
from ..lifecycle import events
from ..roles import requires
from . import bp
from .auth import bearer, board_for_request, still_may
from .validate import query


def parse_follow(board_id: int, q: dict[str, Any], last_event_id: str | None = None
                 ) -> tuple[events.Cursor | None, list[str], int | None]:
    """The cursor, kinds and job a follower asked for (shared with the
    dashboard's stream); an unknown key is a 404."""
    after = last_event_id or q.get("after")
    cursor = (None if after is None else events.head(board_id) if after == "now"
              else events.parse_cursor(after))
    kinds = [k for k in (q.get("types") or "").split(",") if k]
    job_id = None
    if q.get("key") is not None:
        job_id = queries.job_id_of(board_id, q["key"])
        if job_id is None:
            raise NotFound(f"no job {q['key']!r} on this board")
    return cursor, kinds, job_id


@bp.get("/boards/<name>/events")
@requires("read")
def list_events(name: str):
    board = board_for_request(name)
    q = query("/boards/{name}/events")
    cursor, kinds, job_id = parse_follow(board.id, q)
    page = follow.wait_for(board.id, cursor, kinds, job_id, q["limit"], q["wait"])
    return jsonify(events=page.events, next_cursor=str(page.next_cursor))


@bp.get("/boards/<name>/events/stream")
@requires("read")
def stream_events(name: str):
    board = board_for_request(name)
    token = bearer() or ""
    return event_stream(board.id, query("/boards/{name}/events/stream"),
                        lambda: still_may(token, board, "read"))


def event_stream(board_id: int, q: dict[str, Any], allowed: Callable[[], bool]) -> Response:
    """The SSE answer, resuming from Last-Event-ID when the client sends
    it, for as long as ``allowed`` (the reader's access, asked again)."""
    last = request.headers.get("Last-Event-ID", "").strip() or None
    cursor, kinds, job_id = parse_follow(board_id, q, last)
    events.read(board_id, cursor, limit=1)  # a cursor past the retention: 410 now
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return Response(follow.sse(app, board_id, cursor, kinds, job_id, allowed),
                    mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
