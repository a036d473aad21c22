"""Jobs in and out: push, claim and the classic report (update_job)."""
from __future__ import annotations

import functools
import time
from typing import Any, Iterable

from sqlalchemy import Connection, bindparam, func, select, update

from .. import live, sweeper
from ..dialect import insert_ignore, insert_rows_ignore, write_transaction
from ..extensions import socketio
from ..models import EventKind, Outcome, WorkerState
from .counters import Tally
from .common import (ACTIVE, ATTEMPTS, JOBS, WORKERS, _CLOSE_ATTEMPT, _NEW_EVENT, _STAGE_OK, ClaimedJob,
                     NewJob, NotFound, _check_stages, _dialect, _engine, _event)

PUSH_CHUNK = 5000
_PUSH_COLUMNS = ["board_id", "key", "payload", "stage", "entered_at", "flagged", "attempts",
                 "state"]

_CLAIM = (
    update(JOBS)
    .where(JOBS.c.id.in_(
        select(JOBS.c.id)
        .where(JOBS.c.board_id == bindparam("b"), JOBS.c.stage == bindparam("from_stage"),
               JOBS.c.state == ACTIVE)
        .order_by(JOBS.c.entered_at, JOBS.c.id)
        .limit(bindparam("n"))
        .with_for_update(skip_locked=True)  # PostgreSQL; SQLite locks the whole file
        .scalar_subquery()),
        _STAGE_OK)
    .values(stage=bindparam("to_stage"), entered_at=bindparam("now"), flagged=False,
            attempts=JOBS.c.attempts + 1, heartbeat_at=bindparam("hb"))
    .returning(JOBS.c.id, JOBS.c.key, JOBS.c.payload, JOBS.c.attempts)
)

_JOB_STAGE = (select(JOBS.c.stage, JOBS.c.state)
              .where(JOBS.c.board_id == bindparam("b"), JOBS.c.key == bindparam("k"))
              .with_for_update())  # PostgreSQL: the move below is counted from this
_NEW_ATTEMPT = ATTEMPTS.insert().returning(ATTEMPTS.c.id)
_NEW_ATTEMPTS = ATTEMPTS.insert().returning(ATTEMPTS.c.id, ATTEMPTS.c.job_id)

@functools.lru_cache(maxsize=8)
def _update_statement(with_filename: bool, with_payload: bool, forward: bool) -> Any:
    """The classic report's UPDATE, built once per combination of fields.
    A move ``forward`` (to a higher stage) is a success: the job's attempt
    budget starts afresh at its new stage."""
    values: dict[str, Any] = {"stage": bindparam("to_stage"), "entered_at": bindparam("now"),
                              "flagged": False, "state": ACTIVE}
    if forward:
        values["attempts"] = 0
    if with_filename:
        values["filename"] = bindparam("new_filename")
    if with_payload:
        values["payload"] = bindparam("new_payload")
    return (update(JOBS)
            .where(JOBS.c.board_id == bindparam("b"), JOBS.c.key == bindparam("k"), _STAGE_OK)
            .values(**values).returning(JOBS.c.id))


def push(board_id: int, jobs: Iterable[NewJob | tuple[str, str, int]]) -> tuple[int, int]:
    """Add the jobs whose keys the board does not have yet (idempotent).
    Returns (created, existing).  A job is a NewJob or the same plain
    (key, payload JSON text, stage) triple (cheaper to build by the million).

    Stages are checked before anything is written, so bad input writes
    nothing.  Large lists are written in chunks of PUSH_CHUNK jobs, one
    transaction each, yielding between chunks so that a million-job push
    does not hold the database (or an eventlet hub) for seconds; a push cut
    short by a crash is completed by pushing again."""
    jobs = list(jobs)
    if not jobs:
        return 0, 0
    now = time.time()
    with _engine().connect() as conn:
        _check_stages(conn, board_id, *{stage for _, _, stage in jobs})
    created = 0
    tally = Tally()
    for i in range(0, len(jobs), PUSH_CHUNK):
        by_stage: dict[int, list[tuple]] = {}
        for key, payload, stage in jobs[i:i + PUSH_CHUNK]:
            by_stage.setdefault(stage, []).append(
                (board_id, key, payload, stage, now, False, 0, ACTIVE))
        with write_transaction(_engine()) as conn:
            n = 0
            for stage, rows in by_stage.items():  # one stage each: counts stay exact
                added = insert_rows_ignore(conn, JOBS, ["board_id", "key"], _PUSH_COLUMNS, rows)
                tally.move(board_id, added, None, (stage, ACTIVE))
                n += added
            if n:
                conn.execute(_NEW_EVENT, _event(board_id, EventKind.PUSHED, now, count=n))
                tally.apply(conn, now)
        created += n
        socketio.sleep(0)  # let other requests in between chunks
    live.mark_dirty(board_id)
    sweeper.note_growth(created)
    return created, len(jobs) - created


def claim(board_id: int, stage: int, n: int = 1, to_stage: int | None = None,
          worker: str | None = None, host: str | None = None,
          lease: bool = False, pid: int | None = None) -> list[ClaimedJob]:
    """Atomically take up to n waiting jobs at ``stage`` (oldest first) and
    move them to ``to_stage`` (default stage + 1): one UPDATE ... RETURNING.

    ``lease=True`` (API claims) makes the jobs' lifetime count from the
    worker's heartbeats and records the worker as alive."""
    to = stage + 1 if to_stage is None else to_stage
    now = time.time()
    _check_stages(None, board_id, stage, to)
    with write_transaction(_engine()) as conn:
        if lease and worker:
            touch_worker(conn, board_id, worker, now, host=host, pid=pid)
        rows = conn.execute(_CLAIM, {"b": board_id, "from_stage": stage, "n": n, "to_stage": to,
                                     "top": max(stage, to), "now": now,
                                     "hb": now if lease else None}).all()
        if not rows:
            _check_stages(conn, board_id, stage, to)
            return []
        attempts = [{"job_id": r.id, "board_id": board_id, "stage": stage, "worker": worker,
                     "host": host, "started_at": now, "ended_at": None,
                     "outcome": Outcome.RUNNING.value}
                    for r in rows]
        tally = Tally()
        tally.move(board_id, len(rows), (stage, ACTIVE), (to, ACTIVE))
        tally.apply(conn, now)
        if len(attempts) == 1:
            attempt_ids = [conn.execute(_NEW_ATTEMPT, attempts[0]).scalar_one()]
        else:  # one multi-row INSERT; RETURNING order is not guaranteed: map by job
            by_job = {r.job_id: r.id for r in conn.execute(_NEW_ATTEMPTS, attempts)}
            attempt_ids = [by_job[r.id] for r in rows]
    live.mark_dirty(board_id)
    return [ClaimedJob(r.id, r.key, r.payload, stage, a, r.attempts)
            for r, a in zip(rows, attempt_ids)]


def update_job(board_id: int, key: str, stage: int, filename: str | None = None,
               payload: str | None = None) -> int:
    """Put a job at ``stage`` (the classic report): clears its flag, stamps
    the time, closes its open attempt.  Returns the job id."""
    now = time.time()
    params: dict[str, Any] = {"b": board_id, "k": key, "top": stage, "to_stage": stage, "now": now}
    if filename is not None:
        params["new_filename"] = filename
    if payload is not None:
        params["new_payload"] = payload
    _check_stages(None, board_id, stage)
    with write_transaction(_engine()) as conn:
        before = conn.execute(_JOB_STAGE, {"b": board_id, "k": key}).first()
        forward = before is not None and stage > before.stage
        job_id = conn.execute(_update_statement(filename is not None, payload is not None,
                                                forward), params).scalar()
        if job_id is None or before is None:
            _check_stages(conn, board_id, stage)
            raise NotFound(f"no job {key} in this job list")
        tally = Tally()
        tally.move(board_id, 1, (before.stage, before.state), (stage, ACTIVE))
        if stage > before.stage:
            tally.reach(board_id, stage)
        tally.apply(conn, now)
        closed = conn.execute(_CLOSE_ATTEMPT, {"job": job_id, "now": now,
                                               "result": Outcome.ADVANCED.value}).rowcount
        if not closed:  # a move without a claim: the attempts cannot tell it
            conn.execute(_NEW_EVENT, _event(board_id, EventKind.ADVANCED, now, job_id=job_id,
                                            stage=stage))
    live.mark_dirty(board_id)
    return job_id


_TOUCH_WORKER = (
    update(WORKERS)
    .where(WORKERS.c.board_id == bindparam("b"), WORKERS.c.name == bindparam("w"))
    .values(last_seen=bindparam("now"), state=WorkerState.ALIVE.value,
            host=func.coalesce(bindparam("new_host"), WORKERS.c.host),
            pid=func.coalesce(bindparam("new_pid"), WORKERS.c.pid),
            resources=func.coalesce(bindparam("new_resources"), WORKERS.c.resources))
)


def touch_worker(conn: Connection, board_id: int, name: str, now: float,
                 host: str | None = None, pid: int | None = None,
                 resources: str | None = None) -> None:
    """Record that a worker is alive now (created on first sight)."""
    n = conn.execute(_TOUCH_WORKER, {"b": board_id, "w": name, "now": now, "new_host": host,
                                     "new_pid": pid, "new_resources": resources}).rowcount
    if not n:
        conn.execute(insert_ignore(WORKERS, ["board_id", "name"], _dialect()).values(
            board_id=board_id, name=name, first_seen=now, last_seen=now,
            state=WorkerState.ALIVE.value, host=host, pid=pid, resources=resources))
