"""Live updates over Socket.IO, coalesced.

Writers call :func:`mark_dirty` (cheap: a set insert).  One emitter task per
process wakes every ``LIVE_INTERVAL`` seconds, and for each board that changed
since its last pass computes the summary once and sends it to that board's
room.  A burst of 10,000 claims therefore becomes one message per interval.
The dirty set is bounded by the number of boards, not by traffic.

Several processes (MESSAGE_QUEUE set): every emit goes through the queue
to the pages of every process, and a board is sent by one process per
interval whichever processes changed it: a short-lived key in the queue's
Redis (SET NX PX) says which; the others keep the board dirty for their
next pass.
"""
from __future__ import annotations

import logging
import threading

from typing import Any

from flask import Flask, current_app, has_app_context, request
from flask_socketio import emit, join_room

from . import follow
from .extensions import socketio

log = logging.getLogger(__name__)

HOME_ROOM = "home"


def board_room(board_id: int) -> str:
    """The classic job-list page's room (joined with the jobix)."""
    return f"board:{board_id}"


def home_room(board_id: int) -> str:
    """One board's row of the home page, for a viewer who may see only some
    boards (a share link, a member): they join one such room per board."""
    return f"home:{board_id}"


def dashboard_room(board_id: int) -> str:
    """The dashboard board page's room (joined with the board's name)."""
    return f"dash:{board_id}"


class Broadcaster:
    """The dirty set and the emitter task of one app."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.interval = float(app.config["LIVE_INTERVAL"])
        self._dirty: set[int] = set()
        self._lock = threading.Lock()
        self._started = False
        self._stopped = threading.Event()
        self._task: Any = None
        self.shared = None  # the message queue's Redis, when several processes share pages
        if app.config["MESSAGE_QUEUE"]:
            import redis

            self.shared = redis.Redis.from_url(app.config["MESSAGE_QUEUE"])

    def mark(self, board_id: int) -> None:
        with self._lock:
            self._dirty.add(board_id)
        if not self._started:
            self.start()

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        self._task = socketio.start_background_task(self._run)

    def _take(self) -> set[int]:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        return dirty

    def stop(self) -> None:
        """End the emitter task and wait for its last pass (an app being torn
        down, in tests)."""
        self._stopped.set()
        if self._task is not None and hasattr(self._task, "join"):
            self._task.join(self.interval * 4 + 1)

    def _run(self) -> None:
        while not self._stopped.is_set():
            socketio.sleep(self.interval)
            dirty = self._take()
            if not dirty:
                continue
            try:
                self.flush(dirty)
            except Exception:  # keep the emitter alive whatever one pass does
                log.exception("live update failed")

    def _my_turn(self, dirty: set[int]) -> set[int]:
        """The dirty boards this process sends now: all of them alone; with
        other processes, those no process has sent within the interval (the
        others stay dirty for the next pass)."""
        if self.shared is None:
            return dirty
        mine, later = set(), set()
        ms = max(int(self.interval * 1000), 1)
        for board_id in dirty:
            if self.shared.set(f"jobserver:live:{board_id}", 1, nx=True, px=ms):
                mine.add(board_id)
            else:
                later.add(board_id)
        if later:
            with self._lock:
                self._dirty |= later
        return mine

    def _watched(self, room: str) -> bool:
        """Whether a page watches ``room``: asked of this process's clients;
        with several processes the pages may be on the others, so always."""
        return self.shared is not None or _watched(room)

    def flush(self, dirty: set[int]) -> None:
        from . import insights, queries

        dirty = self._my_turn(dirty)
        if not dirty:
            return
        with self.app.app_context():
            # compute only what somebody is watching
            for board_id in dirty:
                if self._watched(board_room(board_id)):
                    socketio.emit("board", queries.board_summary(board_id),
                                  to=board_room(board_id))
                if self._watched(dashboard_room(board_id)):
                    socketio.emit("dashboard", insights.live_payload(board_id),
                                  to=dashboard_room(board_id))
            some = {b for b in dirty if self._watched(home_room(b))}
            everything = self._watched(HOME_ROOM)
            if everything or some:  # the changed boards' rows only
                rows = insights.boards_overview(dirty)
                for row in rows:
                    if row["id"] in some:
                        socketio.emit("boards", [row], to=home_room(row["id"]))
                if everything:
                    socketio.emit("boards", rows, to=HOME_ROOM)
                    gone = dirty - {r["id"] for r in rows}
                    if gone:  # deleted boards leave the home page
                        socketio.emit("boards_gone", sorted(gone), to=HOME_ROOM)


def _watched(room: str) -> bool:
    """Whether any client of this process is in ``room``."""
    server = getattr(socketio, "server", None)
    if server is None:
        return False
    return next(iter(server.manager.get_participants("/", room)), None) is not None


def init_app(app: Flask) -> None:
    app.extensions["jobserver_live"] = Broadcaster(app)


def mark_dirty(board_id: int) -> None:
    """Note that a board changed; the emitter sends it within one interval."""
    if has_app_context():
        b: Broadcaster | None = current_app.extensions.get("jobserver_live")
        if b is not None:
            b.mark(board_id)
        follow.ring(board_id)  # followers of its event log look again


@socketio.on("connect")
def on_connect(auth: Any = None) -> bool:
    """The dashboard's viewer password (if any) guards live updates too."""
    from . import access

    return access.allowed()


@socketio.on("join")
def on_join(data: Any) -> Any:
    """A page asks for a board's updates: {"jobix": N} (the classic page),
    {"board": name} (the dashboard) or {"home": true}."""
    from . import access, lifecycle

    viewer = access.viewer()  # asked again: a share link revoked since connecting
    if viewer is None:
        return {"ok": False, "message": "not allowed"}
    if isinstance(data, dict) and data.get("home"):
        from . import insights

        if viewer.boards is None:
            join_room(HOME_ROOM)
        else:  # only the boards this viewer may see
            for board_id in sorted(viewer.boards)[:1000]:
                join_room(home_room(board_id))
        # every board once (a page reconnecting after a restart catches up);
        # later updates carry only the boards that changed
        emit("boards", insights.boards_overview(viewer.boards))
        return {"ok": True}
    if isinstance(data, dict) and isinstance(data.get("board"), str):
        ref = lifecycle.board_by_name(data["board"])
        if ref is None or not viewer.sees(ref.id):
            return {"ok": False, "message": "no such board"}
        join_room(dashboard_room(ref.id))
        return {"ok": True}
    try:
        jobix = int(data.get("jobix"))  # type: ignore[union-attr]
    except (AttributeError, TypeError, ValueError):
        return {"ok": False, "message": "join needs {\"jobix\": <integer>}"}
    board = lifecycle.find_board(jobix)
    if board is None:
        return {"ok": False, "message": "no job list for this jobix yet"}
    join_room(board_room(board.id))
    log.debug("sid %s joined board %s", getattr(request, "sid", "?"), board.name)
    return {"ok": True}


