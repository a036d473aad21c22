"""Lifetimes enforced: flag overstaying jobs, requeue or fail them."""
from __future__ import annotations

import collections
import itertools
import logging
import time
from typing import Any, Iterator

from sqlalchemy import Connection, bindparam, func, select, true, update

from .. import live, wakeup
from ..dialect import try_sweep_lock, write_transaction
from ..models import EventKind, JobState, Outcome, WorkerState
from . import deps
from .counters import Tally
from .common import (ACTIVE, ATTEMPTS, BOARDS, JOBS, STAGES, WORKERS, _NEW_EVENT, SweepResult,
                     _check_stages, _engine, _event)

log = logging.getLogger(__name__)


def _close_attempts(conn: Connection, job_ids: list[int], now: float, outcome: Outcome) -> None:
    """End the open attempts of these jobs; a worker whose attempt is lost
    is marked lost too."""
    if not job_ids:
        return
    ended = conn.execute(
        update(ATTEMPTS).where(ATTEMPTS.c.job_id.in_(job_ids), ATTEMPTS.c.ended_at.is_(None))
        .values(ended_at=now, outcome=outcome.value)
        .returning(ATTEMPTS.c.board_id, ATTEMPTS.c.worker)).all()
    lost = {(r.board_id, r.worker) for r in ended if r.worker}
    if outcome == Outcome.LOST and lost:
        now_lost = [(b, w) for b, w in sorted(lost) if conn.execute(
            update(WORKERS).where(WORKERS.c.board_id == b, WORKERS.c.name == w,
                                  WORKERS.c.state != WorkerState.LOST.value)
            .values(state=WorkerState.LOST.value)).rowcount]
        _worker_events(conn, now_lost, now)


def _worker_events(conn: Connection, lost: list[tuple[int, str]], now: float) -> None:
    if lost:
        conn.execute(_NEW_EVENT, [_event(b, EventKind.WORKER_LOST, now, detail={"worker": w})
                                  for b, w in lost])


def _lose_silent_workers(conn: Connection, now: float, lost_after: float,
                         board_id: int | None) -> set[int]:
    """Workers not heard from for ``lost_after`` seconds are lost."""
    q = (update(WORKERS)
         .where(WORKERS.c.state == WorkerState.ALIVE.value, WORKERS.c.last_seen < now - lost_after)
         .values(state=WorkerState.LOST.value).returning(WORKERS.c.board_id, WORKERS.c.name))
    if board_id is not None:
        q = q.where(WORKERS.c.board_id == board_id)
    rows = conn.execute(q).all()
    _worker_events(conn, sorted((r.board_id, r.name) for r in rows), now)
    return {r.board_id for r in rows}


def _flag_statement(per_priority: bool) -> Any:
    """Flag a stage's overstaying jobs: those of one priority (a range of
    the claim index), or of any (a walk over the stage's jobs)."""
    return (
        update(JOBS)
        .where(JOBS.c.id.in_(
            select(JOBS.c.id)
            .where(JOBS.c.board_id == bindparam("b"), JOBS.c.stage == bindparam("s"),
                   JOBS.c.state == ACTIVE,
                   JOBS.c.priority == bindparam("p") if per_priority else true(),
                   # implied by the last term (a heartbeat is never older than the
                   # claim), but it lets the claim index skip the young jobs
                   JOBS.c.entered_at < bindparam("cut"),
                   JOBS.c.flagged.is_(False),
                   # a leased (API) job's lifetime counts from its last heartbeat
                   func.coalesce(JOBS.c.heartbeat_at, JOBS.c.entered_at) < bindparam("cut"))
            .scalar_subquery()))
        .values(flagged=True)
        .returning(JOBS.c.id, JOBS.c.board_id, JOBS.c.stage, JOBS.c.attempts,
                   JOBS.c.max_attempts)
    )


_FLAG_OVERDUE = _flag_statement(per_priority=True)
_FLAG_OVERDUE_ANY = _flag_statement(per_priority=False)
MAX_PRIORITY_WALK = 64  # distinct priorities walked at a stage; past that, one walk


_PRIORITIES = select(func.max(JOBS.c.priority)).where(
    JOBS.c.board_id == bindparam("b"), JOBS.c.stage == bindparam("s"), JOBS.c.state == ACTIVE)
_LOWER_PRIORITY = _PRIORITIES.where(JOBS.c.priority < bindparam("p"))


def _priorities(conn: Connection, board_id: int, stage: int) -> Iterator[int]:
    """The distinct priorities of a stage's active jobs, highest first, one
    index seek each (the claim index starts with board, stage, state,
    priority).  Walked by hand because neither database skips through an
    index like this by itself (an extra index by age alone would cost
    every claim and report instead)."""
    p = conn.execute(_PRIORITIES, {"b": board_id, "s": stage}).scalar()
    while p is not None:
        yield p
        p = conn.execute(_LOWER_PRIORITY, {"b": board_id, "s": stage, "p": p}).scalar()


def _flag_overdue(conn: Connection, now: float, board_id: int | None) -> list[Any]:
    """Flag the active jobs that overstay their stage's lifetime: one indexed
    statement per stage that has a lifetime and priority its jobs have
    (never a scan of every job)."""
    q = select(STAGES.c.board_id, STAGES.c.number, STAGES.c.lifetime).where(STAGES.c.lifetime > 0)
    if board_id is not None:
        q = q.where(STAGES.c.board_id == board_id)
    rows: list[Any] = []
    for st in conn.execute(q).all():
        cut = now - st.lifetime * 60.0
        walk = list(itertools.islice(_priorities(conn, st.board_id, st.number),
                                     MAX_PRIORITY_WALK + 1))
        if len(walk) > MAX_PRIORITY_WALK:  # priorities by the thousand: one walk is cheaper
            rows += conn.execute(_FLAG_OVERDUE_ANY, {"b": st.board_id, "s": st.number,
                                                     "cut": cut}).all()
            continue
        for p in walk:
            rows += conn.execute(_FLAG_OVERDUE, {"b": st.board_id, "s": st.number, "p": p,
                                                 "cut": cut}).all()
    if 0 < len(rows) <= 100:
        conn.execute(_NEW_EVENT, [
            _event(r.board_id, EventKind.FLAGGED, now, job_id=r.id, stage=r.stage) for r in rows])
    elif rows:  # a mass flagging (waiting jobs past an even stage's lifetime): one per stage
        per_stage = collections.Counter((r.board_id, r.stage) for r in rows)
        conn.execute(_NEW_EVENT, [_event(b, EventKind.FLAGGED, now, stage=st, count=n)
                                  for (b, st), n in per_stage.items()])
    return rows


def _claimed_from(conn: Connection, job_ids: list[int]) -> dict[int, int]:
    """The stage each job's open attempt claimed it from (a claim may jump
    stages: /get/<s>/<next>, --to-stage)."""
    rows = conn.execute(select(ATTEMPTS.c.job_id, ATTEMPTS.c.stage)
                        .where(ATTEMPTS.c.job_id.in_(job_ids), ATTEMPTS.c.ended_at.is_(None)))
    return {r.job_id: r.stage for r in rows}


def _auto_requeue(conn: Connection, flagged: list[Any], now: float,
                  tally: Tally) -> tuple[int, int]:
    """Send flagged jobs at odd stages back to the stage they were claimed
    from (one stage down when no claim is known), or fail them there once
    they used up their attempts at that stage.  Returns (requeued,
    failed)."""
    odd = [r for r in flagged if r.stage % 2 == 1]
    if not odd:
        return 0, 0
    boards = {b.id: b for b in conn.execute(
        select(BOARDS.c.id, BOARDS.c.auto_requeue, BOARDS.c.max_attempts)
        .where(BOARDS.c.id.in_({r.board_id for r in odd}))).all()}
    odd = [r for r in odd if boards[r.board_id].auto_requeue]
    claimed = _claimed_from(conn, [r.id for r in odd]) if odd else {}
    back = {r.id: claimed.get(r.id, r.stage - 1) for r in odd}
    requeue: dict[tuple[int, int], list[Any]] = {}
    fail: dict[tuple[int, int], list[Any]] = {}
    for r in odd:
        limit = r.max_attempts or boards[r.board_id].max_attempts  # its own, or its board's
        into = fail if r.attempts >= limit else requeue
        into.setdefault((r.stage, back[r.id]), []).append(r)
    for (stage, to), rows in requeue.items():
        conn.execute(update(JOBS).where(JOBS.c.id.in_([r.id for r in rows]))
                     .values(stage=to, flagged=False, entered_at=now, heartbeat_at=None))
        for r in rows:
            tally.move(r.board_id, 1, (stage, ACTIVE), (to, ACTIVE))
    for (stage, to), rows in fail.items():  # failed for good where it was claimed from
        conn.execute(update(JOBS).where(JOBS.c.id.in_([r.id for r in rows]))
                     .values(state=JobState.FAILED.value, heartbeat_at=None, stage=to,
                             flagged=False, entered_at=now,
                             error="lost: its worker went silent for longer than the lifetime"))
        for r in rows:
            tally.move(r.board_id, 1, (stage, ACTIVE), (to, JobState.FAILED.value))
    moved = [r for rows in requeue.values() for r in rows]
    failed = [r for rows in fail.values() for r in rows]
    _close_attempts(conn, [r.id for r in moved + failed], now, Outcome.LOST)
    events = [_event(r.board_id, EventKind.REQUEUED, now, job_id=r.id, stage=back[r.id],
                     detail={"reason": "lifetime exceeded", "attempts": r.attempts})
              for r in moved]
    events += [_event(r.board_id, EventKind.FAILED, now, job_id=r.id, stage=back[r.id],
                      detail={"reason": "lifetime exceeded", "attempts": r.attempts})
               for r in failed]
    if events:
        conn.execute(_NEW_EVENT, events)
    return len(moved), len(failed)


def sweep(board_id: int | None = None, now: float | None = None,
          lost_after: float = 60.0) -> SweepResult:
    """Flag overstaying jobs (of one board or all), requeue or fail the
    flagged ones at odd stages on boards that ask for it, and mark workers
    silent for ``lost_after`` seconds as lost.  One process at a time (on
    PostgreSQL, several servers share the work: a sweep finding another
    under way does nothing)."""
    now = time.time() if now is None else now
    with write_transaction(_engine()) as conn:
        if not try_sweep_lock(conn):  # another process sweeps right now
            return SweepResult(0, 0, 0)
        flagged = _flag_overdue(conn, now, board_id)
        tally = Tally()
        requeued, failed = _auto_requeue(conn, flagged, now, tally)
        changed = _lose_silent_workers(conn, now, lost_after, board_id)
        # the counters last, as in claims and reports (which take a worker's
        # row, then the counters): the same order everywhere, no deadlock
        tally.apply(conn, now)
    for b in changed | {r.board_id for r in flagged}:
        live.mark_dirty(b)
        wakeup.work_arrived(b)
    if flagged:
        log.info("sweep: %d flagged, %d requeued, %d failed", len(flagged), requeued, failed)
    return SweepResult(len(flagged), requeued, failed)


def requeue_flagged(board_id: int, old: int, new: int) -> int:
    """Move this board's flagged jobs at stage ``old`` to ``new`` (by hand)."""
    now = time.time()
    with write_transaction(_engine()) as conn:
        last = _check_stages(conn, board_id, old, new)
        ids = conn.execute(
            update(JOBS).where(JOBS.c.board_id == board_id, JOBS.c.stage == old,
                               JOBS.c.flagged == true(), JOBS.c.state == ACTIVE)
            .values(stage=new, flagged=False, entered_at=now, heartbeat_at=None)
            .returning(JOBS.c.id)
        ).scalars().all()
        _close_attempts(conn, list(ids), now, Outcome.LOST)
        tally = Tally()
        tally.move(board_id, len(ids), (old, ACTIVE), (new, ACTIVE))
        if new == last:
            deps.release(conn, list(ids), tally, now)
        tally.apply(conn, now)
        if ids:
            conn.execute(_NEW_EVENT, [
                _event(board_id, EventKind.REQUEUED, now, job_id=j, stage=new,
                       detail={"reason": "check_stages", "from": old}) for j in ids])
    live.mark_dirty(board_id)
    wakeup.work_arrived(board_id)
    return len(ids)
