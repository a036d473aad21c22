"""Following the event log: long-poll reads and Server-Sent Events.

A follower waits on a per-board bell that this process rings after each
commit that touched the board (live.mark_dirty), and looks again at least
every POLL seconds: changes made through another server process ring no
bell here, and on PostgreSQL an event becomes readable only once older
transactions have ended (lifecycle/events.py).  The bells are per process,
one per waiting request, gone when it ends.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Iterator, Sequence

from flask import Flask, current_app

from .lifecycle import events
from .lifecycle.events import Cursor, Page

POLL = 1.0  # seconds between two looks of a waiting follower, at most
GAP = 0.25  # ... and at least: a burst of commits is one look, not one per commit
RETRY_MS = 2000  # what an EventSource waits before it reconnects
RECHECK = 2.0  # seconds between two checks that a stream's reader may still read


class Bells:
    """Waiting followers by board."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, set[threading.Event]] = {}

    def ring(self, board_id: int) -> None:
        with self._lock:
            bells = list(self._waiting.get(board_id, ()))
        for bell in bells:
            bell.set()

    def listen(self, board_id: int) -> threading.Event:
        bell = threading.Event()
        with self._lock:
            self._waiting.setdefault(board_id, set()).add(bell)
        return bell

    def forget(self, board_id: int, bell: threading.Event) -> None:
        with self._lock:
            mine = self._waiting.get(board_id)
            if mine is not None:
                mine.discard(bell)
                if not mine:
                    del self._waiting[board_id]


def init_app(app: Flask) -> None:
    app.extensions["jobserver_bells"] = Bells()


def ring(board_id: int) -> None:
    bells: Bells | None = current_app.extensions.get("jobserver_bells")
    if bells is not None:
        bells.ring(board_id)


def wait_for(board_id: int, after: Cursor | None, kinds: Sequence[str] = (),
             job_id: int | None = None, limit: int = 100, wait: float = 0.0) -> Page:
    """events.read, holding on up to ``wait`` seconds while nothing comes."""
    page = events.read(board_id, after, kinds, job_id, limit)
    if page.events or wait <= 0:
        return page
    bells: Bells = current_app.extensions["jobserver_bells"]
    bell = bells.listen(board_id)
    deadline = time.monotonic() + wait
    try:
        while not page.events:
            looked = time.monotonic()
            left = deadline - looked
            if left <= 0:
                break
            bell.wait(min(POLL, left))  # green under eventlet (monkey-patched)
            time.sleep(max(0.0, min(looked + GAP, deadline) - time.monotonic()))
            bell.clear()
            page = events.read(board_id, page.next_cursor, kinds, job_id, limit)
    finally:
        bells.forget(board_id, bell)
    return page


def sse(app: Flask, board_id: int, after: Cursor | None, kinds: Sequence[str] = (),
        job_id: int | None = None, allowed: Callable[[], bool] | None = None
        ) -> Iterator[str]:
    """The event stream: one SSE message per event (``id`` the cursor,
    ``data`` the event as JSON), a keep-alive comment every SSE_HEARTBEAT
    seconds (carrying the cursor as ``id``, so that a filtered stream
    resumes past what it skipped), until SSE_MAX_SECONDS (the client
    reconnects with Last-Event-ID) or until ``allowed`` says the client may
    no longer read the board (asked every RECHECK seconds; the client's
    reconnection is then refused).  It runs in an app context of its own:
    the request's is gone while the answer streams."""
    yield f"retry: {RETRY_MS}\n\n"
    with app.app_context():
        heartbeat = float(app.config["SSE_HEARTBEAT"])
        ends = time.monotonic() + float(app.config["SSE_MAX_SECONDS"])
        cursor = sent = after
        quiet_since = time.monotonic()
        while True:
            left = ends - time.monotonic()
            if left <= 0 or (allowed is not None and not allowed()):
                return
            page = wait_for(board_id, cursor, kinds, job_id, limit=500,
                            wait=min(RECHECK, heartbeat, left))
            cursor = page.next_cursor
            if page.events:
                yield "".join(frame(e) for e in page.events)
            elif time.monotonic() - quiet_since >= heartbeat:
                yield ": keep-alive\n\n" if cursor == sent else f": keep-alive\nid: {cursor}\n\n"
            else:
                continue
            quiet_since, sent = time.monotonic(), cursor


def frame(e: dict[str, Any]) -> str:
    """One event as an SSE message."""
    return f"id: {e['cursor']}\ndata: {json.dumps(e)}\n\n"
