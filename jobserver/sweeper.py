"""Lifetimes that act by themselves.

``thread`` mode runs :func:`lifecycle.sweep` every ``SWEEP_INTERVAL`` seconds
in a background task (standalone server).  ``request`` mode runs it from
incoming requests, at most once per interval per process (mod_wsgi, where a
process may be recycled at any time).  ``off`` leaves it to cron
(`jobserver sweep`).
"""
from __future__ import annotations

import logging
import threading
import time

from flask import Flask, current_app, has_app_context

from . import lifecycle
from .lifecycle import events
from .dialect import optimize
from .extensions import db, socketio

log = logging.getLogger(__name__)

OPTIMIZE_EVERY = 60.0  # seconds between two refreshes of the planner's statistics
PRUNE_EVERY = 600.0  # seconds between two passes of the event log's retention


class Sweeper:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.interval = float(app.config["SWEEP_INTERVAL"])
        self._lock = threading.Lock()
        self._next = 0.0
        self._thread_started = False
        self._next_optimize = 0.0
        self._next_prune = 0.0

    def maybe_sweep(self) -> None:
        """Sweep if the interval has passed; never two at once, never blocks."""
        now = time.monotonic()
        if now < self._next or not self._lock.acquire(blocking=False):
            return
        try:
            if now < self._next:
                return
            self._next = now + self.interval
            self._sweep_once()
        finally:
            self._lock.release()

    def _sweep_once(self) -> None:
        try:
            with self.app.app_context():
                lifecycle.sweep(lost_after=self.app.config["WORKER_LOST_AFTER"])
                if time.monotonic() >= self._next_optimize:
                    self._next_optimize = time.monotonic() + OPTIMIZE_EVERY
                    optimize(db.engine)
                if time.monotonic() >= self._next_prune:
                    self._next_prune = time.monotonic() + PRUNE_EVERY
                    events.prune(self.app.config["EVENT_RETENTION_DAYS"])
        except Exception:
            log.exception("sweep failed")

    def optimize_soon(self) -> None:
        """Refresh the planner's statistics at the next pass (a big push)."""
        self._next_optimize = 0.0

    def start_thread(self) -> None:
        if self._thread_started:
            return
        self._thread_started = True
        socketio.start_background_task(self._loop)

    def _loop(self) -> None:
        while True:
            self._sweep_once()
            socketio.sleep(self.interval)


def note_growth(created: int) -> None:
    """Called after a push: a large one makes stale statistics likely."""
    if created >= 10_000 and has_app_context():
        sweeper: Sweeper | None = current_app.extensions.get("jobserver_sweeper")
        if sweeper is not None:
            sweeper.optimize_soon()


def init_app(app: Flask) -> None:
    sweeper = Sweeper(app)
    app.extensions["jobserver_sweeper"] = sweeper
    mode = app.config["SWEEP_MODE"]
    if mode not in ("thread", "request", "off"):
        raise SystemExit(f"JOBSERVER_SWEEP_MODE must be thread, request or off, not {mode!r}")
    if mode == "request":
        app.before_request(sweeper.maybe_sweep)
    elif mode == "thread":
        # Started with the first request, so that importing an app (tests,
        # the CLI) starts no thread.
        app.before_request(sweeper.start_thread)
