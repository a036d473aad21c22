"""Dependencies between jobs: checked at push, released in the transaction
in which an upstream job reaches the board's last stage.

A job pushed with ``after`` keys gets one Dependency row per upstream job
and ``waiting_on`` = how many of them are not done yet; while that is above
0 it is BLOCKED (never claimed).  When upstream jobs arrive at the last
stage their rows are marked satisfied (once: a job moved back and forth by
hand is not counted twice) and the downstream jobs whose count reaches 0
become waiting: no polling sweep.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from sqlalchemy import Connection, bindparam, select, update

from ..dialect import insert_rows_ignore
from ..models import EventKind, JobState
from .common import ACTIVE, DEPS, JOBS, _NEW_EVENT, LifecycleError, _event, chunked
from .counters import Tally

BLOCKED = JobState.BLOCKED.value
SHOWN_KEYS = 20  # offending keys named in an error message


@dataclass(frozen=True)
class Extras:
    """What a pushed job may carry besides key, payload and stage."""
    after: tuple[str, ...] = ()
    priority: int = 0
    max_attempts: int | None = None


def named(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(repr(k) for k in keys[:SHOWN_KEYS])
    return shown + (f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else "")


def existing_jobs(conn: Connection, board_id: int, keys: Iterable[str]) -> dict[str, Any]:
    """The board's jobs among ``keys``: key -> (id, key, stage, state, payload)."""
    keys = list(dict.fromkeys(keys))
    out: dict[str, Any] = {}
    for part in chunked(keys):
        for r in conn.execute(select(JOBS.c.id, JOBS.c.key, JOBS.c.stage, JOBS.c.state,
                                     JOBS.c.payload)
                              .where(JOBS.c.board_id == board_id, JOBS.c.key.in_(part))):
            out[r.key] = r
    return out


def stored_upstream(conn: Connection, job_ids: Sequence[int]) -> dict[int, set[str]]:
    """The upstream keys of these jobs, as stored."""
    up = JOBS.alias("up")
    out: dict[int, set[str]] = collections.defaultdict(set)
    for part in chunked(list(job_ids)):
        for r in conn.execute(select(DEPS.c.job_id, up.c.key)
                              .join(up, up.c.id == DEPS.c.upstream_id)
                              .where(DEPS.c.job_id.in_(part))):
            out[r.job_id].add(r.key)
    return out


def upstream_first(new: dict[str, tuple[str, ...]]) -> list[str]:
    """The new jobs' keys ordered so that every job comes after the new jobs
    it names (Kahn's algorithm); raises on a cycle, naming its keys.
    ``new``: key -> after keys (those not in ``new`` exist already)."""
    downstream: dict[str, list[str]] = collections.defaultdict(list)
    pending = {}
    for key, after in new.items():
        inside = [a for a in after if a in new]
        pending[key] = len(inside)
        for a in inside:
            downstream[a].append(key)
    order = [k for k, n in pending.items() if n == 0]
    for key in order:  # grows while it is walked
        for d in downstream.get(key, ()):
            pending[d] -= 1
            if pending[d] == 0:
                order.append(d)
    if len(order) < len(new):
        stuck = {k for k, n in pending.items() if n > 0}
        raise LifecycleError(f"these jobs depend on each other in a cycle (or on a job in "
                             f"one): {named(stuck)}; nothing was pushed")
    return order


def check_after(new: dict[str, tuple[str, ...]], known: set[str]) -> None:
    """Every ``after`` key of a new job names a job of the board or of the
    push (``known``); a job never names itself."""
    unknown = {a for after in new.values() for a in after if a not in known}
    if unknown:
        raise LifecycleError(f"'after' names jobs that are neither on this board nor in this "
                             f"push: {named(unknown)}; nothing was pushed")
    selfish = {k for k, after in new.items() if k in after}
    if selfish:
        raise LifecycleError(f"these jobs name themselves in 'after' (a cycle): "
                             f"{named(selfish)}; nothing was pushed")


_DONE_NOW = (select(JOBS.c.id, JOBS.c.stage, JOBS.c.state)
             .where(JOBS.c.id.in_(bindparam("ids", expanding=True)))
             # PostgreSQL: an upstream job cannot arrive at the last stage
             # (and miss these rows) until this push commits
             .with_for_update(read=True))


def done_among(conn: Connection, ids: Sequence[int], last: int) -> set[int]:
    """Which of these (committed) jobs are done now, locked against moving."""
    done: set[int] = set()
    for part in chunked(list(ids)):
        done |= {r.id for r in conn.execute(_DONE_NOW, {"ids": list(part)})
                 if r.stage == last and r.state == ACTIVE}
    return done


def add_edges(conn: Connection, edges: list[tuple[int, int, bool]]) -> None:
    """(upstream id, job id, satisfied) rows."""
    insert_rows_ignore(conn, DEPS, ["upstream_id", "job_id"], ["upstream_id", "job_id",
                                                               "satisfied"], edges)


_WAITING_ON = (select(DEPS.c.upstream_id)
               .where(DEPS.c.upstream_id.in_(bindparam("ids", expanding=True)),
                      DEPS.c.satisfied.is_(False)).limit(1))
_SATISFY = (update(DEPS)
            .where(DEPS.c.upstream_id.in_(bindparam("ids", expanding=True)),
                   DEPS.c.satisfied.is_(False))
            .values(satisfied=True).returning(DEPS.c.job_id))
_LOCK_JOBS = (select(JOBS.c.id).where(JOBS.c.id.in_(bindparam("jobs", expanding=True)))
              .order_by(JOBS.c.id).with_for_update())
_COUNT_DOWN = (update(JOBS).where(JOBS.c.id.in_(bindparam("jobs", expanding=True)))
               .values(waiting_on=JOBS.c.waiting_on - bindparam("n")))
_UNBLOCK = (update(JOBS)
            .where(JOBS.c.id.in_(bindparam("jobs", expanding=True)), JOBS.c.state == BLOCKED,
                   JOBS.c.waiting_on <= 0)
            .values(state=ACTIVE, entered_at=bindparam("now"))
            .returning(JOBS.c.board_id, JOBS.c.stage, JOBS.c.id))


def release(conn: Connection, upstream_ids: Sequence[int], tally: Tally, now: float) -> int:
    """These jobs arrived at their board's last stage: count them off their
    downstream jobs and unblock those with nothing left to wait for (in the
    caller's transaction).  Returns how many were unblocked."""
    if not upstream_ids:
        return 0
    # most jobs are nobody's upstream job: a read (on the primary key) is
    # cheaper than an UPDATE that changes nothing
    if not any(conn.execute(_WAITING_ON, {"ids": list(part)}).first()
               for part in chunked(list(upstream_ids))):
        return 0
    waiting = collections.Counter()
    for part in chunked(list(upstream_ids)):
        waiting.update(conn.execute(_SATISFY, {"ids": list(part)}).scalars())
    if not waiting:
        return 0
    ordered = sorted(waiting)
    if conn.dialect.name == "postgresql":
        # lock the downstream jobs in id order first: two reports releasing
        # the same jobs in other orders would deadlock
        for part in chunked(ordered):
            conn.execute(_LOCK_JOBS, {"jobs": list(part)}).all()
    by_n: dict[int, list[int]] = collections.defaultdict(list)
    for job_id in ordered:
        by_n[waiting[job_id]].append(job_id)
    for n, jobs in by_n.items():
        for part in chunked(jobs):
            conn.execute(_COUNT_DOWN, {"jobs": list(part), "n": n})
    unblocked = 0
    for part in chunked(ordered):
        rows = conn.execute(_UNBLOCK, {"jobs": list(part), "now": now}).all()
        stages = collections.Counter((r.board_id, r.stage) for r in rows)
        for (board_id, stage), k in stages.items():
            tally.move(board_id, k, (stage, BLOCKED), (stage, ACTIVE))
            unblocked += k
        if rows:
            conn.execute(_NEW_EVENT, [_event(r.board_id, EventKind.UNBLOCKED, now, job_id=r.id,
                                             stage=r.stage) for r in rows])
    return unblocked

