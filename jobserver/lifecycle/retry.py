"""A person's hands on waiting and finished jobs: retry the failed or
cancelled ones (the resume of a stopped workflow), change priorities."""
from __future__ import annotations

import collections
import time
from typing import Any, Sequence

from sqlalchemy import Connection, and_, case, select, update

from .. import live, wakeup
from ..dialect import write_transaction
from ..models import EventKind, JobState, Outcome
from .common import (ACTIVE, ATTEMPTS, JOBS, _LAST_STAGE, _NEW_EVENT, LifecycleError, _engine,
                     _event, chunked)
from .counters import Tally
from .deps import BLOCKED

RETRYABLE = (JobState.FAILED.value, JobState.CANCELLED.value)


RETRY_CHUNK = 5000  # jobs per transaction: retrying a million holds no writer for long


def _waited_at(conn: Connection, jobs: list[Any]) -> dict[int, int]:
    """The even stage each job last waited at: its own, or for a job
    cancelled while running (at an odd stage), the stage its last attempt
    claimed it from."""
    claimed: dict[int, int] = {}
    for part in chunked([j.id for j in jobs if j.stage % 2]):
        claimed.update((r.job_id, r.stage) for r in conn.execute(
            select(ATTEMPTS.c.job_id, ATTEMPTS.c.stage).where(ATTEMPTS.c.job_id.in_(part))
            .order_by(ATTEMPTS.c.id)))  # the last attempt of each wins
    return {j.id: claimed.get(j.id, j.stage - j.stage % 2) if j.stage % 2 else j.stage
            for j in jobs}


def retry(board_id: int, keys: Sequence[str] | None = None, state: str | None = None) -> int:
    """Put failed or cancelled jobs (those keys, all of one ``state``, or
    those keys in that state) back where they last waited with a fresh attempt budget: waiting, or
    blocked while upstream jobs are not done.  Their downstream jobs follow
    by themselves once they are done.  Returns how many were put back.

    Chunks of RETRY_CHUNK jobs, one transaction each; a job changed by
    someone else meanwhile (another retry) is left to them."""
    if keys is None and state is None:
        raise LifecycleError("give keys, a state (failed or cancelled), or both")
    if state is not None and state not in RETRYABLE:
        raise LifecycleError(f"only failed or cancelled jobs can be retried, not {state!r}")
    q = (select(JOBS.c.id, JOBS.c.stage, JOBS.c.state).where(JOBS.c.board_id == board_id)
         .where(JOBS.c.state == state if state is not None else JOBS.c.state.in_(RETRYABLE)))
    with _engine().connect() as conn:
        if keys is None:
            found = conn.execute(q.order_by(JOBS.c.id)).all()
        else:
            found = [j for part in chunked(list(dict.fromkeys(keys)))
                     for j in conn.execute(q.where(JOBS.c.key.in_(part)))]
    retried = 0
    for jobs in chunked(found, RETRY_CHUNK):
        retried += _retry_chunk(board_id, jobs, keys, state)
    live.mark_dirty(board_id)
    wakeup.work_arrived(board_id)
    return retried


def _retry_chunk(board_id: int, jobs: list[Any], keys: Sequence[str] | None,
                 state: str | None) -> int:
    now = time.time()
    with write_transaction(_engine()) as conn:
        back = _waited_at(conn, jobs)
        groups: dict[tuple[int, str, int], list[int]] = collections.defaultdict(list)
        for j in jobs:
            groups[(j.stage, j.state, back[j.id])].append(j.id)
        tally = Tally()
        done: list[int] = []
        for (stage, was, to), ids in groups.items():
            for part in chunked(ids):
                rows = conn.execute(
                    update(JOBS).where(JOBS.c.id.in_(part), JOBS.c.state == was,
                                       JOBS.c.stage == stage)
                    .values(stage=to, attempts=0, flagged=False, heartbeat_at=None,
                            entered_at=now, error=None,
                            state=case((JOBS.c.waiting_on > 0, BLOCKED), else_=ACTIVE))
                    .returning(JOBS.c.id, JOBS.c.state)).all()
                for now_state, k in collections.Counter(r.state for r in rows).items():
                    tally.move(board_id, k, (stage, was), (to, now_state))
                done += [r.id for r in rows]
                if rows:
                    conn.execute(_NEW_EVENT, [
                        _event(board_id, kind, now, job_id=r.id, stage=to)
                        for r in rows for kind in (
                            (EventKind.RETRIED, EventKind.BLOCKED) if r.state == BLOCKED
                            else (EventKind.RETRIED,))])
        # a running job that was cancelled may still hold an open attempt:
        # its worker's report must not move the job it no longer owns
        for part in chunked(done):
            conn.execute(update(ATTEMPTS).where(ATTEMPTS.c.job_id.in_(part),
                                                ATTEMPTS.c.ended_at.is_(None))
                         .values(ended_at=now, outcome=Outcome.CANCELLED.value))
        tally.apply(conn, now)
    return len(done)


def set_priority(board_id: int, keys: Sequence[str], priority: int) -> int:
    """Give these jobs a new priority, if they are still waiting or blocked
    (a running or finished job keeps its own).  Returns how many changed."""
    keys = list(dict.fromkeys(keys))
    n = 0
    with write_transaction(_engine()) as conn:
        last = conn.execute(_LAST_STAGE, {"b": board_id}).scalar()
        waiting = and_(JOBS.c.state.in_([ACTIVE, BLOCKED]), JOBS.c.stage % 2 == 0)
        if last is not None:
            waiting = and_(waiting, JOBS.c.stage < last)
        for part in chunked(keys):
            n += conn.execute(update(JOBS).where(JOBS.c.board_id == board_id,
                                                 JOBS.c.key.in_(part), waiting)
                              .values(priority=priority)).rowcount
    live.mark_dirty(board_id)
    return n
