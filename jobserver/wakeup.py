"""Long-poll claims: waiting claimers, and the wake-ups that end their wait.

A claim with ``wait`` that finds nothing registers a waiter (an event) for
its board and stage and sleeps on it; lifecycle calls :func:`work_arrived`
after each commit that may have made jobs claimable (a push, a retry, a
requeue, a release, unblocked downstream jobs...), which sets the board's
events, and the woken claimers try again.  Nothing polls the database in a
loop: a per-process watchdog looks every ``RECHECK`` seconds, for each
(board, stage) somebody waits on, at the kept counters (one indexed read),
and wakes those waiters only if jobs wait there: the safety net for a
wake-up lost on the way.

Across processes (several servers on one PostgreSQL database), a wake-up
travels as a PostgreSQL NOTIFY on channel ``jobserver_work``: each process
LISTENs on one connection of its own (opened when its first claimer waits)
and sends the boards that got work, coalesced: at most one NOTIFY per
``NOTIFY_GAP`` seconds per process, so a burst of 10,000 reports costs a
handful of statements.  (PostgreSQL rather than the Socket.IO Redis queue:
several processes need PostgreSQL anyway, LISTEN/NOTIFY needs no other
service, and a NOTIFY measured here arrives in about a millisecond.)

Hand-written because no library offers "hold a WSGI request until a
database row appears" for both eventlet and threads: the primitives are
``threading.Event`` (green under eventlet's monkey patching) and
``socketio.start_background_task``/``socketio.sleep``, as live.py uses.
Everything here is bounded by the requests waiting right now, not by
traffic; the database stays the truth (a lost wake-up costs at most
RECHECK seconds).
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from typing import Any, Callable, Sequence, TypeVar

from flask import Flask, current_app, has_app_context

from .extensions import socketio

log = logging.getLogger(__name__)

MAX_WAIT = 60.0  # seconds a claim may be held (the API's bound on "wait")
RECHECK = 5.0  # the watchdog's look at the counters of waited-on boards
WAKE_FIRST = 4  # claims woken per board and stage by one arrival (they wake the next)
NOTIFY_GAP = 0.02  # at most one NOTIFY per this many seconds per process
CHANNEL = "jobserver_work"
_MAX_NOTIFY_BOARDS = 500  # board ids per NOTIFY payload (PostgreSQL caps it at 8000 bytes)

T = TypeVar("T")


class Waker:
    """The waiters of one app, its watchdog, and (on PostgreSQL) its
    LISTEN connection and NOTIFY sender."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._lock = threading.Lock()
        # (board, stage) -> events of the claims waiting there, oldest first
        self._waiters: dict[tuple[int, int], dict[threading.Event, None]] = {}
        self._pending: set[int] = set()  # boards to announce to other processes
        self._send = threading.Event()
        self._stopped = threading.Event()
        self._tasks: list[Any] = []
        self._watchdog = False
        self._sender = False
        self._listening = False
        self._listen_conn: Any = None
        self.token = uuid.uuid4().hex[:12]  # our own NOTIFYs come back: skip them
        self.remote = self._engine().dialect.name == "postgresql"

    def _engine(self) -> Any:
        from .extensions import db

        with self.app.app_context():
            return db.engine

    # ---------------------------------------------------------------- waiters

    def register(self, board_id: int, stage: int) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._waiters.setdefault((board_id, stage), {})[event] = None
        self._start_watchers()
        return event

    def unregister(self, board_id: int, stage: int, event: threading.Event) -> None:
        with self._lock:
            waiting = self._waiters.get((board_id, stage))
            if waiting is not None:
                waiting.pop(event, None)
                if not waiting:
                    del self._waiters[(board_id, stage)]

    def waiting(self) -> int:
        with self._lock:
            return sum(len(w) for w in self._waiters.values())

    def wake_local(self, boards: Sequence[int]) -> None:
        """Wake the WAKE_FIRST longest-waiting claims of each stage of these
        boards (not all: one job pushed to a board with 1,000 waiters must
        not cost 1,000 claims); a woken claim that finds jobs wakes the next
        ones (see wait_for), so a big push reaches every waiter quickly."""
        wanted = set(boards)
        with self._lock:
            events = [e for (b, _), evs in self._waiters.items() if b in wanted
                      for e in itertools.islice((e for e in evs if not e.is_set()), WAKE_FIRST)]
        for e in events:
            e.set()

    def arrived(self, board_id: int) -> None:
        """Work arrived on a board (after the commit): wake our waiters, and
        tell the other processes."""
        self.wake_local((board_id,))
        if not self.remote:
            return
        with self._lock:
            self._pending.add(board_id)
            start = not self._sender
            self._sender = True
        if start:
            self._tasks.append(socketio.start_background_task(self._send_loop))
        self._send.set()

    # ------------------------------------------------------------ background

    def _start_watchers(self) -> None:
        with self._lock:
            if self._watchdog:
                return
            self._watchdog = True
        if self.remote:
            try:  # LISTEN before the first claim: a NOTIFY sent meanwhile is not missed
                self._listen_conn = self._listen()
                self._tasks.append(socketio.start_background_task(self._listen_loop))
            except Exception:
                log.exception("wake-ups: cannot LISTEN; other processes' work is seen within "
                              "%s s", RECHECK)
        self._tasks.append(socketio.start_background_task(self._watch_loop))

    def stop(self) -> None:
        """End the background tasks (an app being torn down, in tests)."""
        self._stopped.set()
        self._send.set()
        for task in self._tasks:
            if hasattr(task, "join"):
                task.join(RECHECK + 1)
        if self._listen_conn is not None:
            self._listen_conn.close()

    def _watch_loop(self) -> None:
        """The safety net: every RECHECK seconds, wake the waiters of the
        (board, stage) pairs where jobs wait (by the kept counters)."""
        from .queries import waiting_counts

        while not self._stopped.is_set():
            self._stopped.wait(RECHECK)
            with self._lock:
                pairs = list(self._waiters)
            if not pairs:
                continue
            try:
                with self.app.app_context():
                    found = waiting_counts(pairs)
            except Exception:
                log.exception("wake-ups: the safety re-check failed")
                continue
            with self._lock:
                events = [e for p in found for e in self._waiters.get(p, ())]
            for e in events:
                e.set()

    def _send_loop(self) -> None:
        """Announce boards with new work to the other processes: one NOTIFY
        for everything pending, then at least NOTIFY_GAP before the next."""
        from sqlalchemy import text

        engine = self._engine()
        while not self._stopped.is_set():
            self._send.wait()
            self._send.clear()
            with self._lock:
                boards, self._pending = sorted(self._pending), set()
            if not boards or self._stopped.is_set():
                continue
            try:
                with engine.connect() as conn:
                    for i in range(0, len(boards), _MAX_NOTIFY_BOARDS):
                        part = boards[i:i + _MAX_NOTIFY_BOARDS]
                        conn.execute(text("SELECT pg_notify(:c, :p)"),
                                     {"c": CHANNEL,
                                      "p": f"{self.token}:{','.join(map(str, part))}"})
                    conn.commit()
            except Exception:
                log.exception("wake-ups: NOTIFY failed (other processes see the work within "
                              "%s s)", RECHECK)
            socketio.sleep(NOTIFY_GAP)

    def _listen(self) -> Any:
        """A connection of our own (out of the pool), LISTENing."""
        raw = self._engine().raw_connection()
        conn = raw.driver_connection
        raw.detach()
        conn.rollback()
        conn.autocommit = True
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def _listen_loop(self) -> None:
        """Read NOTIFYs as they come: select() on the connection's socket
        (green under eventlet), then libpq's non-blocking consume_input; a
        lost connection is opened again after a pause."""
        import select

        conn = self._listen_conn
        while not self._stopped.is_set():
            try:
                if conn is None:
                    conn = self._listen_conn = self._listen()
                ready, _, _ = select.select([conn.fileno()], [], [], 1.0)
                if not ready:
                    continue
                pg = conn.pgconn
                pg.consume_input()
                boards: set[int] = set()
                while (n := pg.notifies()) is not None:
                    token, _, ids = n.extra.decode().partition(":")
                    if token != self.token:
                        boards.update(int(b) for b in ids.split(",") if b.isdigit())
                if boards:
                    self.wake_local(sorted(boards))
            except Exception as exc:
                if self._stopped.is_set():
                    break
                log.warning("wake-ups: LISTEN connection lost (%s); again in %s s", exc, RECHECK)
                try:
                    if conn is not None:
                        conn.close()
                except Exception:
                    pass
                conn = self._listen_conn = None
                self._stopped.wait(RECHECK)


_create_lock = threading.Lock()


def _waker() -> Waker | None:
    if not has_app_context():
        return None
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    w = app.extensions.get("jobserver_wakeup")
    if w is None:
        with _create_lock:
            w = app.extensions.get("jobserver_wakeup")
            if w is None:
                w = app.extensions["jobserver_wakeup"] = Waker(app)
    return w


def work_arrived(board_id: int) -> None:
    """Lifecycle, after a commit that may have made jobs of this board
    claimable: wake the claims waiting for it, here and in other processes."""
    w = _waker()
    if w is not None:
        w.arrived(board_id)


def wait_for(board_id: int, stage: int, wait: float, attempt: Callable[[], list[T]]) -> list[T]:
    """``attempt()`` (a claim) at once, and while it finds nothing and
    ``wait`` seconds have not passed, again each time work arrives on the
    board.  Returns what the last attempt found (empty when the time is up)."""
    wait = min(max(float(wait or 0), 0.0), MAX_WAIT,
               float(current_app.config["CLAIM_WAIT_MAX"]) if has_app_context() else MAX_WAIT)
    w = _waker() if wait > 0 else None
    if w is None:
        return attempt()
    deadline = time.monotonic() + wait
    event = w.register(board_id, stage)  # before the first try: no wake-up falls between
    try:
        while True:
            got = attempt()
            if got:  # there may be more: the next waiters try too
                w.wake_local((board_id,))
                return got
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            if not event.wait(left):
                return got  # the time is up (the watchdog wakes us if work was missed)
            event.clear()
    finally:
        w.unregister(board_id, stage, event)


def stop(app: Flask) -> None:
    w = app.extensions.get("jobserver_wakeup")
    if w is not None:
        w.stop()


