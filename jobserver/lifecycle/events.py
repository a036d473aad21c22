"""The one event log: what happened to a board's jobs and workers, in
commit order, with a cursor that a follower resumes from.

Lifecycle writes the rows (``_event`` + ``_NEW_EVENT`` in common, in the
same transaction as the change); this module owns the cursor, the reads
that follow it and the retention.

**The cursor is (tx, id).**  SQLite has one writer at a time: an event's
id is handed out while the file's write lock is held, which lasts until the
commit, so ids grow in commit order and tx is 0.  PostgreSQL hands out ids
from a sequence before commit, and transactions commit in any order: a
follower that has read id 7 could miss id 6 committed a moment later.  So
there every event records the id of the transaction that wrote it (``tx``,
the column's default: migration 0007), and a read returns only events of
transactions older than the oldest one still running (``pg_snapshot_xmin``):
those have all committed or never will, so a cursor taken below that
horizon is never overtaken.  Order is (tx, id).  The price: an event is
readable once every transaction older than its own has ended, milliseconds
unless a session somewhere holds a transaction open (which delays, never
loses).

**Retention.**  The sweep removes events older than ``EVENT_RETENTION_DAYS``
and records on the board the newest cursor it removed; a read from an older
cursor is refused (Gone, HTTP 410): the reader lists the board again and
follows from ``now``.
"""
from __future__ import annotations

import itertools
import json
import time
from typing import Any, NamedTuple, Sequence

from sqlalchemy import Connection, delete, select, tuple_, update

from ..extensions import socketio
from .common import BOARDS, EVENTS, JOBS, LifecycleError, _engine

PRUNE_CHUNK = 10_000  # events removed per transaction
MAX_LIMIT = 1000  # events per read


class Gone(LifecycleError):
    """A cursor older than what the retention kept (HTTP 410)."""


class Cursor(NamedTuple):
    tx: int
    id: int

    def __str__(self) -> str:
        return str(self.id) if self.tx == 0 else f"{self.tx}-{self.id}"


START = Cursor(0, 0)


def parse_cursor(text: str) -> Cursor:
    """A cursor as the API gave it out: "123" (SQLite) or "4567-123"."""
    tx, sep, id_ = text.strip().rpartition("-")
    try:
        cursor = Cursor(int(tx) if sep else 0, int(id_))
    except ValueError:
        raise LifecycleError(f"{text[:40]!r} is not an event cursor: pass back a 'cursor' or "
                             f"'next_cursor' this server gave, or 'now'") from None
    if cursor.tx < 0 or cursor.id < 0 or cursor.tx >= 2**63 or cursor.id >= 2**63:
        raise LifecycleError(f"{text[:40]!r} is not an event cursor")
    return cursor


class Page(NamedTuple):
    events: list[dict[str, Any]]
    next_cursor: Cursor


def _horizon(conn: Connection) -> int | None:
    """PostgreSQL: events of transactions below this are final."""
    if conn.dialect.name != "postgresql":
        return None
    return conn.exec_driver_sql(
        "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").scalar_one()


def _pruned(conn: Connection, board_id: int) -> Cursor:
    row = conn.execute(select(BOARDS.c.events_pruned_tx, BOARDS.c.events_pruned_id)
                       .where(BOARDS.c.id == board_id)).first()
    return START if row is None else Cursor(row[0], row[1])


def read(board_id: int, after: Cursor | None = None, kinds: Sequence[str] = (),
         job_id: int | None = None, limit: int = 100) -> Page:
    """Up to ``limit`` events after the cursor (from the oldest kept, when
    None), of those kinds and that job if given.  ``next_cursor`` is where
    the next read starts: past the last event returned, or past every event
    that was looked at when fewer than ``limit`` matched (so a filtered
    follower does not read the same events again).

    The newest readable event is found first and the read stops there:
    the statements need not share a snapshot (SQLite's driver runs each
    on its own), as everything up to that event has committed."""
    limit = max(1, min(limit, MAX_LIMIT))
    with _engine().connect() as conn:
        start = after if after is not None else START
        horizon = _horizon(conn)
        top = _newest(conn, board_id, horizon)
        rows: list[Any] = []
        if top is not None and top > start:
            rows = _after(conn, board_id, start, top, kinds, job_id, limit)
        # the marker last: a prune that committed during the reads above
        # (its deletes and its marker are one transaction) is seen here
        pruned = _pruned(conn, board_id)
        conn.rollback()  # a read: end it (PostgreSQL)
    if after is not None and after < pruned:
        raise Gone(f"events up to cursor {pruned} were removed by the retention "
                   f"(EVENT_RETENTION_DAYS); cursor {after} is older: list the board "
                   f"again and follow from after=now")
    if top is None or top <= start:
        return Page([], max(start, pruned))
    if len(rows) == limit:
        return Page([_shape(r) for r in rows], Cursor(rows[-1].tx, rows[-1].id))
    return Page([_shape(r) for r in rows], max(top, pruned))


def _after(conn: Connection, board_id: int, start: Cursor, top: Cursor, kinds: Sequence[str],
           job_id: int | None, limit: int) -> list[Any]:
    """The events in (start, top], of those kinds and that job."""
    q = (select(EVENTS.c.tx, EVENTS.c.id, EVENTS.c.kind, EVENTS.c.at, EVENTS.c.stage,
                EVENTS.c.count, EVENTS.c.detail, JOBS.c.key)
         .outerjoin(JOBS, JOBS.c.id == EVENTS.c.job_id)
         .where(EVENTS.c.board_id == board_id,
                tuple_(EVENTS.c.tx, EVENTS.c.id) > tuple_(start.tx, start.id),
                tuple_(EVENTS.c.tx, EVENTS.c.id) <= tuple_(top.tx, top.id)))
    if kinds:
        q = q.where(EVENTS.c.kind.in_(list(kinds)))
    if job_id is not None:
        q = q.where(EVENTS.c.job_id == job_id)
    return conn.execute(q.order_by(EVENTS.c.tx, EVENTS.c.id).limit(limit)).all()


def _newest(conn: Connection, board_id: int, horizon: int | None) -> Cursor | None:
    q = select(EVENTS.c.tx, EVENTS.c.id).where(EVENTS.c.board_id == board_id)
    if horizon is not None:
        q = q.where(EVENTS.c.tx < horizon)
    row = conn.execute(q.order_by(EVENTS.c.tx.desc(), EVENTS.c.id.desc()).limit(1)).first()
    return None if row is None else Cursor(*row)


def head(board_id: int) -> Cursor:
    """The cursor of the newest readable event (``after=now``)."""
    with _engine().connect() as conn:
        top = _newest(conn, board_id, _horizon(conn))
        pruned = _pruned(conn, board_id)
        conn.rollback()
    return pruned if top is None else max(top, pruned)


def _shape(r: Any) -> dict[str, Any]:
    return {"cursor": str(Cursor(r.tx, r.id)), "kind": r.kind, "at": r.at, "key": r.key,
            "stage": r.stage, "count": r.count,
            "detail": None if r.detail is None else json.loads(r.detail)}


def prune(retention_days: float, now: float | None = None) -> int:
    """Remove the events older than the retention, board by board, oldest
    cursor first, in chunks; each board remembers the newest cursor
    removed.  Returns how many.  (Walked in cursor order through the cursor
    index, up to the first event young enough: no index by age, which
    every event written would pay for.)"""
    if retention_days <= 0:
        return 0
    cutoff = (now or time.time()) - retention_days * 86400
    removed = 0
    with _engine().connect() as conn:
        boards = conn.execute(select(BOARDS.c.id)).scalars().all()
        conn.rollback()
    for board_id in boards:
        while True:
            with _engine().begin() as conn:
                oldest = conn.execute(select(EVENTS.c.at).where(EVENTS.c.board_id == board_id)
                                      .order_by(EVENTS.c.tx, EVENTS.c.id).limit(1)).scalar()
                if oldest is None or oldest >= cutoff:
                    break
                old = (select(EVENTS.c.tx, EVENTS.c.id, EVENTS.c.at)
                       .where(EVENTS.c.board_id == board_id)
                       .order_by(EVENTS.c.tx, EVENTS.c.id).limit(PRUNE_CHUNK)).subquery()
                first = conn.execute(select(old.c.tx, old.c.id, old.c.at)).all()
                gone = [Cursor(r.tx, r.id) for r in itertools.takewhile(
                    lambda r: r.at < cutoff, first)]
                if gone:
                    newest = gone[-1]
                    conn.execute(delete(EVENTS).where(
                        EVENTS.c.board_id == board_id,
                        tuple_(EVENTS.c.tx, EVENTS.c.id) <= tuple_(newest.tx, newest.id)))
                    # only ever raised (two processes may prune at once)
                    conn.execute(update(BOARDS).where(
                        BOARDS.c.id == board_id,
                        tuple_(BOARDS.c.events_pruned_tx, BOARDS.c.events_pruned_id)
                        < tuple_(newest.tx, newest.id))
                        .values(events_pruned_tx=newest.tx, events_pruned_id=newest.id))
            removed += len(gone)
            if len(gone) < PRUNE_CHUNK:
                break
            socketio.sleep(0)
    return removed
