"""Live logs, the read side: an attempt's kept output as plain text, read
in pages after a cursor, or followed until the attempt ends.

Chunks are read in the order they came (``pos``: where each starts among
the attempt's output, both streams).  A cursor is
``<pos>.<stdout end>.<stderr end>``: where the reader stopped, and where
each stream stood there (the worker's byte count), so that a later read
can tell output dropped in between (by the bounds, see lifecycle/logs.py)
and say so in one line of the text:
``[jobserver: 12,345 earlier bytes of this log were dropped]``.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from sqlalchemy import Connection, func, select
from sqlalchemy.engine import Engine

from .lifecycle import NotFound
from .lifecycle.common import ATTEMPTS, JOBS, STAGES
from .lifecycle.logs import ATTEMPT_LOGS, CHUNKS, STREAMS
from .models import JobState

PAGE_ROWS = 1000  # chunks read per statement
PAGE_BYTES = 512 << 10  # bytes of text a page answers at most (then "more")
POLL = 1.0  # seconds between two looks at a followed attempt
KEEPALIVE = 15.0  # seconds of silence after which a follower gets a NUL byte
KEEPALIVE_BYTE = b"\0"  # never in a log's text (NUL is kept as U+FFFD); terminals ignore it

TAIL_ONLY = ("[jobserver: the worker of this attempt sent only the tail of its output "
             "(an older jobworker): here it is]\n")
CURSOR = re.compile(r"^(\d{1,18})(?:\.(\d{1,18})\.(\d{1,18}))?$")


@dataclass
class Cursor:
    pos: int = 0
    ends: dict[str, int] = field(default_factory=dict)  # stream -> bytes seen up to

    @classmethod
    def parse(cls, text: str | None) -> "Cursor":
        m = CURSOR.match(text or "0")
        if m is None:
            raise ValueError("after: a cursor is <pos>.<out>.<err> (digits), as the "
                             "X-Jobserver-Log-Cursor header gives it")
        ends = {} if m.group(2) is None else {"out": int(m.group(2)), "err": int(m.group(3))}
        return cls(int(m.group(1)), ends)

    def __str__(self) -> str:
        return f"{self.pos}.{self.ends.get('out', 0)}.{self.ends.get('err', 0)}"


class NotStarted(NotFound):
    """The job has no attempt yet."""

    def __init__(self, message: str, job_id: int) -> None:
        super().__init__(message)
        self.job_id = job_id


@dataclass(frozen=True)
class AttemptRef:
    id: int
    number: int  # 1-based among the job's attempts (the job page's #)
    total: int  # the job's attempts so far
    stage: int


@dataclass
class Page:
    text: str
    cursor: Cursor
    running: bool  # the attempt was still open when the page was read
    more: bool  # stopped at PAGE_BYTES: read again at once


def find_attempt(conn: Connection, board_id: int, key: str,
                 number: int | None = None) -> AttemptRef:
    """The job's ``number``-th attempt (default: its latest), or NotFound
    saying what is missing."""
    job_id = None if "\x00" in key else conn.execute(
        select(JOBS.c.id).where(JOBS.c.board_id == board_id, JOBS.c.key == key)).scalar()
    if job_id is None:
        raise NotFound(f"no job {key!r} on this board")
    total = conn.execute(select(func.count()).select_from(ATTEMPTS)
                         .where(ATTEMPTS.c.job_id == job_id)).scalar_one()
    if total == 0:
        raise NotStarted(f"job {key!r} has not run yet: it has no attempt, and no log", job_id)
    if number is None:
        number = total
    if number > total:
        raise NotFound(f"job {key!r} has {total} attempt{'' if total == 1 else 's'}, "
                       f"not {number}")
    row = conn.execute(select(ATTEMPTS.c.id, ATTEMPTS.c.stage)
                       .where(ATTEMPTS.c.job_id == job_id).order_by(ATTEMPTS.c.id)
                       .offset(number - 1).limit(1)).one()
    return AttemptRef(row.id, number, total, row.stage)


def marker(dropped: int) -> str:
    return f"[jobserver: {dropped:,} earlier bytes of this log were dropped]\n"


def read_page(conn: Connection, attempt_id: int, streams: tuple[str, ...], after: Cursor,
              max_bytes: int = PAGE_BYTES) -> Page:
    """The attempt's kept output after ``after``, at most ``max_bytes`` of
    it (whole chunks; at least one), with a marker line where output was
    dropped.  Reads whether the attempt is open first, then how far its
    streams reached, then the chunks: a chunk committed with the state
    read is read too, so a shortfall at the end is output dropped."""
    ended = conn.execute(select(ATTEMPTS.c.ended_at)
                         .where(ATTEMPTS.c.id == attempt_id)).first()
    running = ended is not None and ended.ended_at is None
    state = conn.execute(select(ATTEMPT_LOGS.c.out_end, ATTEMPT_LOGS.c.err_end)
                         .where(ATTEMPT_LOGS.c.attempt_id == attempt_id)).first()
    ends = dict(after.ends)
    parts: list[str] = []
    size, last, more, gap = 0, after.pos, False, 0
    if not ends and not after.pos:  # a first read: all dropped before, in one line
        for s in streams:
            first = conn.execute(select(CHUNKS.c.offset).where(
                CHUNKS.c.attempt_id == attempt_id, CHUNKS.c.stream == s)
                .order_by(CHUNKS.c.pos).limit(1)).scalar()
            if first is not None:
                gap += first
                ends[s] = first
    while not more:
        rows = conn.execute(
            select(CHUNKS.c.pos, CHUNKS.c.stream, CHUNKS.c.offset, CHUNKS.c.size, CHUNKS.c.text)
            .where(CHUNKS.c.attempt_id == attempt_id, CHUNKS.c.pos >= last,
                   CHUNKS.c.stream.in_(streams))
            .order_by(CHUNKS.c.pos).limit(PAGE_ROWS)).all()
        for r in rows:
            if parts and size + r.size > max_bytes:
                more = True
                break
            gap += max(r.offset - ends.get(r.stream, 0), 0)
            if gap:
                _add_marker(parts, gap)
                gap = 0
            parts.append(r.text)
            size += r.size
            ends[r.stream] = r.offset + r.size
            last = r.pos + r.size
        if len(rows) < PAGE_ROWS:
            break
    if not parts and state is None and not running and not after.pos and not after.ends:
        # an older worker sends only the tail of the output: its last one
        tail = conn.execute(select(ATTEMPTS.c.log).where(ATTEMPTS.c.id == attempt_id)).scalar()
        if tail:
            parts = [TAIL_ONLY, tail, "" if tail.endswith("\n") else "\n"]
            ends = {s: 0 for s in STREAMS}  # read on from here: nothing more
    if not more and state is not None:  # dropped with nothing kept after it
        reached = {"out": state.out_end, "err": state.err_end}
        gap = sum(max(reached[s] - ends.get(s, 0), 0) for s in streams)
        if gap:
            _add_marker(parts, gap)
            for s in streams:
                ends[s] = max(ends.get(s, 0), reached[s])
    return Page("".join(parts), Cursor(last, ends), running, more)


def _add_marker(parts: list[str], dropped: int) -> None:
    """The marker on a line of its own."""
    if parts and not parts[-1].endswith("\n"):
        parts.append("\n")
    parts.append(marker(dropped))


RECHECK = 2.0  # seconds between two checks that a follower may still read


def _still(allowed: Callable[[], bool] | None, checked: list[float]) -> bool:
    """``allowed()``, asked at most every RECHECK seconds."""
    if allowed is None or time.monotonic() - checked[0] < RECHECK:
        return True
    checked[0] = time.monotonic()
    return allowed()


def follow(engine: Engine, attempt_id: int, streams: tuple[str, ...], after: Cursor,
           sleep: Callable[[float], Any], until_end: bool = True,
           allowed: Callable[[], bool] | None = None) -> Iterator[bytes]:
    """The attempt's output as it comes (UTF-8), until the attempt has
    ended and everything is read, or ``allowed`` says the reader may no
    longer read it (a revoked token); a NUL byte after KEEPALIVE seconds of
    silence keeps proxies from cutting the connection.  Without
    ``until_end``, what is kept now and no more."""
    cursor, quiet, first = after, 0.0, True
    checked = [time.monotonic()]
    while True:
        if not _still(allowed, checked):
            return
        with engine.connect() as conn:
            page = read_page(conn, attempt_id, streams, cursor)
        cursor = page.cursor
        if page.text:
            quiet = 0.0
            yield page.text.encode("utf-8")
        elif first and until_end:
            yield KEEPALIVE_BYTE  # the headers go out with the first byte: at once
        first = False
        if page.more:
            continue
        if not page.running or not until_end:
            return
        sleep(POLL)
        quiet += POLL
        if quiet >= KEEPALIVE:
            quiet = 0.0
            yield KEEPALIVE_BYTE


def start_then_follow(engine: Engine, job_id: int, streams: tuple[str, ...],
                      sleep: Callable[[float], Any],
                      allowed: Callable[[], bool] | None = None) -> Iterator[bytes]:
    """Wait for the job's first attempt (keeping the connection alive),
    then follow it; the end if the job is done, failed, cancelled or gone
    without one, or if ``allowed`` says no more."""
    yield KEEPALIVE_BYTE  # the headers go out with the first byte: at once
    quiet = 0.0
    checked = [time.monotonic()]
    while True:
        if not _still(allowed, checked):
            return
        with engine.connect() as conn:
            job = conn.execute(select(JOBS.c.state, JOBS.c.stage, select(
                func.max(STAGES.c.number)).where(STAGES.c.board_id == JOBS.c.board_id)
                .scalar_subquery().label("last")).where(JOBS.c.id == job_id)).first()
            first = conn.execute(select(ATTEMPTS.c.id).where(ATTEMPTS.c.job_id == job_id)
                                 .order_by(ATTEMPTS.c.id).limit(1)).scalar()
        if first is not None:
            yield from follow(engine, first, streams, Cursor(), sleep, allowed=allowed)
            return
        if job is None or job.state in (JobState.FAILED.value, JobState.CANCELLED.value) \
                or (job.last is not None and job.stage >= job.last):
            return
        sleep(POLL)
        quiet += POLL
        if quiet >= KEEPALIVE:
            quiet = 0.0
            yield KEEPALIVE_BYTE


def streams_of(name: str) -> tuple[str, ...]:
    return STREAMS if name == "both" else (name,)


def text_response(board_id: int, key: str, q: dict[str, Any], page_bytes: int,
                  allowed: Callable[[], bool] | None = None) -> Any:
    """The answer of both log routes (API and dashboard): the attempt's
    kept output after ``q["after"]`` as text/plain, at most
    ``page_bytes`` of it unless followed; the headers say which attempt,
    whether it runs, the cursor to read on from and whether there is more."""
    from flask import Response

    from .extensions import db, socketio

    try:
        after = Cursor.parse(q.get("after"))
    except ValueError as exc:
        from werkzeug.exceptions import BadRequest

        raise BadRequest(str(exc)) from None
    streams = streams_of(q.get("stream") or "both")
    with db.engine.connect() as conn:
        try:
            attempt = find_attempt(conn, board_id, key, q.get("attempt"))
        except NotStarted as exc:  # followed: from its first attempt on
            if not q.get("follow") or q.get("attempt") is not None:
                raise
            return Response(start_then_follow(db.engine, exc.job_id, streams, socketio.sleep,
                                              allowed),
                            mimetype="text/plain",
                            headers={"X-Jobserver-Attempts": "0", "Cache-Control": "no-store",
                                     "X-Accel-Buffering": "no"})
        page = None if q.get("follow") else read_page(conn, attempt.id, streams, after,
                                                      page_bytes)
    headers = {"X-Jobserver-Attempt": str(attempt.number),
               "X-Jobserver-Attempts": str(attempt.total),
               "X-Jobserver-Attempt-Stage": str(attempt.stage),
               "Cache-Control": "no-store"}
    if page is None:  # followed: streamed until the attempt ends
        headers["X-Accel-Buffering"] = "no"  # nginx passes each piece on at once
        return Response(follow(db.engine, attempt.id, streams, after, socketio.sleep,
                               allowed=allowed),
                        mimetype="text/plain", headers=headers)
    headers.update({"X-Jobserver-Attempt-Running": "true" if page.running else "false",
                    "X-Jobserver-Log-Cursor": str(page.cursor),
                    "X-Jobserver-Log-More": "true" if page.more else "false"})
    return Response(page.text, mimetype="text/plain", headers=headers)
