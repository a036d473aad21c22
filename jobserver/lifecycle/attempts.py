"""The worker side of the API: advance, fail, release, cancel, heartbeat.

An attempt id is a worker's handle on a claimed job.  Only an open attempt
(not yet ended by a report or by the sweeper) may change its job; a stale one
gets Conflict and changes nothing.
"""
from __future__ import annotations

import collections
import json
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from sqlalchemy import Connection, bindparam, func, select, text, update

from .. import live, wakeup
from ..dialect import Hot, write_transaction
from ..models import EventKind, JobState, Outcome, WorkerState
from .common import (ACTIVE, ATTEMPTS, BOARDS, JOBS, STAGES, WORKERS, _LAST_STAGE,
                     _JOB_EVENT, _NEW_EVENT, Conflict, _check_stages, _engine, _event)
from . import deps
from .counters import Tally
from .jobs import DOWNSTREAM, attempt_events, touch_worker
from .logs import keep_chunks
from .pools import record_samples

MAX_ERROR = 4000  # characters of error text kept
MAX_LOG = 16000  # characters of log tail kept
NOTE_KINDS = {"event": EventKind.NOTE_EVENT, "log": EventKind.NOTE_LOG, "var": EventKind.NOTE_VAR}


def _text(output: str, keep: int) -> str:
    """The tail of a command's output as every database stores it: a NUL
    (which PostgreSQL's text refuses) becomes U+FFFD, a lone surrogate '?'."""
    tail = output[-keep:].replace("\x00", "\ufffd")
    return tail if tail.isascii() else tail.encode("utf-8", "replace").decode("utf-8")


@dataclass(frozen=True)
class Advance:
    attempt_id: int
    to_stage: int | None = None  # default: the claimed-from stage + 2
    result: str | None = None  # JSON text
    filename: str | None = None
    log: str | None = None  # the tail of the job's output, kept with its attempt


# By primary key alone: given the board and "still open" as well, SQLite's
# planner walks a board-wide index (or the whole table) instead, and every
# report grew with the board's attempt history.  With them, the board's
# last stage.
_ATTEMPT_COLUMNS = (
    ATTEMPTS.c.id, ATTEMPTS.c.job_id, ATTEMPTS.c.stage, ATTEMPTS.c.worker,
    ATTEMPTS.c.board_id, ATTEMPTS.c.ended_at,
    JOBS.c.key, JOBS.c.state, JOBS.c.attempts, JOBS.c.stage.label("job_stage"),
    JOBS.c.max_attempts.label("job_max_attempts"), ATTEMPTS.c.allocation,
    ATTEMPTS.c.notes,
    select(func.max(STAGES.c.number)).where(STAGES.c.board_id == JOBS.c.board_id)
    .scalar_subquery().label("last"))
_OPEN_ATTEMPTS = (
    select(*_ATTEMPT_COLUMNS)
    .join(JOBS, JOBS.c.id == ATTEMPTS.c.job_id)
    .where(ATTEMPTS.c.id.in_(bindparam("ids", expanding=True)))
    # the jobs too: a cancel committing in between must not be counted twice
    .with_for_update(of=[ATTEMPTS, JOBS])
)
_OPEN_ATTEMPT = Hot(  # the same for one attempt (most reports)
    select(*_ATTEMPT_COLUMNS)
    .join(JOBS, JOBS.c.id == ATTEMPTS.c.job_id)
    .where(ATTEMPTS.c.id == bindparam("id"))
    .with_for_update(of=[ATTEMPTS, JOBS])
)


def _open_attempts(conn: Connection, board_id: int, ids: Iterable[int]) -> dict[int, Any]:
    """The still-open attempts of this board among ``ids``, with their jobs,
    locked on PostgreSQL for the rest of the transaction."""
    ids = list(ids)
    if len(ids) == 1:
        rows = _OPEN_ATTEMPT.all(conn, {"id": ids[0]})
    else:
        rows = conn.execute(_OPEN_ATTEMPTS, {"ids": ids}).all()
    return {r.id: r for r in rows if r.board_id == board_id and r.ended_at is None}


def _require_open(found: dict[int, Any], ids: Sequence[int]) -> None:
    stale = [i for i in ids if i not in found]
    if stale:
        raise Conflict(f"{len(stale)} attempt(s) no longer hold their job (lost, requeued or "
                       "already reported): nothing was changed", {"stale_attempts": stale})


_ADVANCE_JOB = (
    update(JOBS).where(JOBS.c.id == bindparam("job"))
    .values(stage=bindparam("to_stage"), entered_at=bindparam("now"), flagged=False,
            heartbeat_at=None, result=bindparam("new_result"), attempts=0)
)
_ADVANCE_JOB_FILE = _ADVANCE_JOB.values(filename=bindparam("new_filename"))
_ADVANCE_ONE = Hot(_ADVANCE_JOB.returning(DOWNSTREAM))
_ADVANCE_JOBS = (
    update(JOBS).where(JOBS.c.id.in_(bindparam("jobs", expanding=True)))
    .values(stage=bindparam("to_stage"), entered_at=bindparam("now"), flagged=False,
            heartbeat_at=None, result=None, attempts=0)
)
_END_ATTEMPTS = (
    update(ATTEMPTS).where(ATTEMPTS.c.id.in_(bindparam("attempts", expanding=True)))
    .values(ended_at=bindparam("now"), outcome=bindparam("result_outcome"))
)
_END_ATTEMPT = (
    update(ATTEMPTS).where(ATTEMPTS.c.id == bindparam("attempt"))
    .values(ended_at=bindparam("now"), outcome=bindparam("result_outcome"))
)
_END_ONE = Hot(_END_ATTEMPT)
# PostgreSQL: an attempt's end and its job's event in one statement
_END_AND_EVENT = Hot(text(
    "WITH c AS (UPDATE attempts SET ended_at = :now, outcome = :result_outcome "
    "WHERE id = :attempt) "
    "INSERT INTO events (board_id, job_id, kind, at, stage, count, detail) "
    "VALUES (:board_id, :job_id, :kind, :at, :stage, 1, :detail)"))
_KEEP_LOG = (
    update(ATTEMPTS).where(ATTEMPTS.c.id == bindparam("attempt")).values(log=bindparam("tail"))
)


def advance(board_id: int, items: Sequence[Advance]) -> dict[str, int]:
    """Report claimed jobs done with their stage: all of them or none.  A
    success starts the next stage's attempt budget afresh."""
    if not items:
        return {"advanced": 0, "cancelled": 0}
    ids = [i.attempt_id for i in items]
    if len(set(ids)) != len(ids):
        raise Conflict("the same attempt appears twice in one advance: nothing was changed",
                       {"repeated_attempts": sorted(
                           i for i, k in collections.Counter(ids).items() if k > 1)[:50]})
    now = time.time()
    with write_transaction(_engine(), durable=False) as conn:
        found = _open_attempts(conn, board_id, ids)
        _require_open(found, ids)
        targets = {i.attempt_id: (found[i.attempt_id].stage + 2 if i.to_stage is None
                                  else i.to_stage) for i in items}
        last = next(iter(found.values())).last  # None: the board declares no stages
        _check_stages(None, board_id, *targets.values())
        if last is not None and max(targets.values()) > last:
            _check_stages(conn, board_id, *targets.values())  # says which
        moving = [i for i in items if found[i.attempt_id].state == ACTIVE]
        cancelled = [i for i in items if found[i.attempt_id].state != ACTIVE]
        # Plain reports (no result, no file name) move in one statement per
        # target stage; the others one row each.
        plain: dict[int, list[int]] = {}
        detailed = []
        done_alone = set()  # single jobs moved to the last stage that no job waits on
        for i in moving:
            if i.result is None and i.filename is None:
                plain.setdefault(targets[i.attempt_id], []).append(found[i.attempt_id].job_id)
            else:
                detailed.append(i)
        for to_stage, job_ids in plain.items():
            if len(job_ids) == 1:
                moved = _ADVANCE_ONE.first(conn, {"job": job_ids[0], "to_stage": to_stage,
                                                  "now": now, "new_result": None})
                if not moved.downstream:
                    done_alone.add(job_ids[0])
            else:
                conn.execute(_ADVANCE_JOBS, {"jobs": job_ids, "to_stage": to_stage, "now": now})
        for stmt, group in ((_ADVANCE_JOB, [i for i in detailed if i.filename is None]),
                            (_ADVANCE_JOB_FILE, [i for i in detailed if i.filename is not None])):
            if group:
                conn.execute(stmt, [
                    {"job": found[i.attempt_id].job_id, "to_stage": targets[i.attempt_id],
                     "now": now, "new_result": i.result, "new_filename": i.filename}
                    for i in group])
        tally = Tally()
        for i in moving:
            a = found[i.attempt_id]
            tally.move(board_id, 1, (a.job_stage, ACTIVE), (targets[i.attempt_id], ACTIVE))
            tally.reach(board_id, targets[i.attempt_id])
        deps.release(conn, [found[i.attempt_id].job_id for i in moving
                            if targets[i.attempt_id] == last
                            and found[i.attempt_id].job_id not in done_alone], tally, now)
        # PostgreSQL, one job reported: its attempt's end and its event in one
        # statement (a round trip less)
        together = conn.dialect.name == "postgresql" and len(moving) == 1
        for outcome, group in ((Outcome.ADVANCED, moving), (Outcome.CANCELLED, cancelled)):
            if together and outcome == Outcome.ADVANCED:
                continue
            if len(group) == 1:
                _END_ONE.run(conn, {"attempt": group[0].attempt_id, "now": now,
                                    "result_outcome": outcome.value})
            elif group:
                conn.execute(_END_ATTEMPTS, {"attempts": [i.attempt_id for i in group],
                                             "now": now, "result_outcome": outcome.value})
        logs = [{"attempt": i.attempt_id, "tail": _text(i.log, MAX_LOG)} for i in items if i.log]
        if logs:
            conn.execute(_KEEP_LOG, logs)
        if len(moving) == 1:
            i = moving[0]
            event = {"board_id": board_id, "job_id": found[i.attempt_id].job_id,
                     "kind": (EventKind.DONE if targets[i.attempt_id] == last
                              else EventKind.ADVANCED).value,
                     "at": now, "stage": targets[i.attempt_id],
                     "detail": '{"attempt":%d}' % i.attempt_id}
            if together:
                _END_AND_EVENT.run(conn, {**event, "attempt": i.attempt_id, "now": now,
                                          "result_outcome": Outcome.ADVANCED.value})
            else:
                _JOB_EVENT.run(conn, event)
        else:  # a batch: written by the database from the attempts, per target stage
            by_target: dict[int, list[int]] = {}
            for i in moving:
                by_target.setdefault(targets[i.attempt_id], []).append(i.attempt_id)
            for to_stage, attempt_ids in by_target.items():
                attempt_events(conn, EventKind.DONE if to_stage == last else EventKind.ADVANCED,
                               attempt_ids, stage=to_stage)
        tally.apply(conn, now)  # last: the board's counter rows are locked until commit
    live.mark_dirty(board_id)
    wakeup.work_arrived(board_id)
    return {"advanced": len(moving), "cancelled": len(cancelled)}


def fail(board_id: int, attempt_id: int, error: str, exit_code: int | None = None,
         log: str | None = None) -> str:
    """A claimed job failed: back to its stage for another try, or failed for
    good once it has used its max_attempts (its own, or else the board's)
    at that stage (it then stays at the stage it was claimed from).
    Returns "requeued", "failed" or "cancelled"."""
    now = time.time()
    error = _text(error or "", MAX_ERROR)
    with write_transaction(_engine()) as conn:
        found = _open_attempts(conn, board_id, [attempt_id])
        _require_open(found, [attempt_id])
        a = found[attempt_id]
        max_attempts = a.job_max_attempts or conn.execute(
            select(BOARDS.c.max_attempts).where(BOARDS.c.id == board_id)).scalar_one()
        tally = Tally()
        if a.state != ACTIVE:
            outcome = "cancelled"
        elif a.attempts >= max_attempts:
            outcome = "failed"
            conn.execute(update(JOBS).where(JOBS.c.id == a.job_id).values(
                stage=a.stage, state=JobState.FAILED.value, error=error, heartbeat_at=None,
                entered_at=now, flagged=False))
            tally.move(board_id, 1, (a.job_stage, ACTIVE), (a.stage, JobState.FAILED.value))
        else:
            outcome = "requeued"
            conn.execute(update(JOBS).where(JOBS.c.id == a.job_id).values(
                stage=a.stage, error=error, heartbeat_at=None, entered_at=now, flagged=False))
            tally.move(board_id, 1, (a.job_stage, ACTIVE), (a.stage, ACTIVE))
        tally.apply(conn, now)
        conn.execute(update(ATTEMPTS).where(ATTEMPTS.c.id == attempt_id).values(
            ended_at=now, outcome=Outcome.FAILED.value, error=error, exit_code=exit_code,
            log=None if log is None else _text(log, MAX_LOG)))
        if outcome != "cancelled":
            kind = EventKind.FAILED if outcome == "failed" else EventKind.REQUEUED
            conn.execute(_NEW_EVENT, _event(
                board_id, kind, now, job_id=a.job_id, stage=a.stage,
                detail={"reason": "failed", "error": error[-500:], "exit_code": exit_code,
                        "attempt": a.attempts}))
    live.mark_dirty(board_id)
    wakeup.work_arrived(board_id)
    return outcome


def release(board_id: int, attempt_ids: Sequence[int]) -> int:
    """Give claimed jobs back untouched (a draining worker): they return to
    their stage and the attempt does not count against max_attempts."""
    if not attempt_ids:
        return 0
    now = time.time()
    with write_transaction(_engine()) as conn:
        found = _open_attempts(conn, board_id, attempt_ids)
        _require_open(found, attempt_ids)
        active = [a for a in found.values() if a.state == ACTIVE]
        tally = Tally()
        for a in active:
            conn.execute(update(JOBS).where(JOBS.c.id == a.job_id).values(
                stage=a.stage, attempts=JOBS.c.attempts - 1, heartbeat_at=None,
                entered_at=now, flagged=False))
            tally.move(board_id, 1, (a.job_stage, ACTIVE), (a.stage, ACTIVE))
        tally.apply(conn, now)
        conn.execute(_END_ATTEMPT, [
            {"attempt": i, "now": now, "result_outcome": Outcome.RELEASED.value}
            for i in attempt_ids])
        if active:
            conn.execute(_NEW_EVENT, [_event(board_id, EventKind.RELEASED, now, job_id=a.job_id,
                                             stage=a.stage) for a in active])
    live.mark_dirty(board_id)
    wakeup.work_arrived(board_id)
    return len(active)


def cancel(board_id: int, keys: Sequence[str] | None = None) -> int:
    """Cancel waiting, blocked and running jobs (all of the board's, or those
    keys); done jobs stay done.  Running ones are told through their
    worker's next heartbeat."""
    now = time.time()
    n = 0
    with write_transaction(_engine()) as conn:
        last = conn.execute(_LAST_STAGE, {"b": board_id}).scalar()
        tally = Tally()
        # blocked first: a job unblocked between the two statements is then
        # caught by the second
        for state in (JobState.BLOCKED.value, ACTIVE):
            q = update(JOBS).where(JOBS.c.board_id == board_id, JOBS.c.state == state)
            if keys is not None:
                q = q.where(JOBS.c.key.in_(list(keys)))
            if last is not None:
                q = q.where(JOBS.c.stage < last)
            rows = conn.execute(q.values(state=JobState.CANCELLED.value, entered_at=now)
                                .returning(JOBS.c.id, JOBS.c.stage)).all()
            for stage, k in collections.Counter(r.stage for r in rows).items():
                tally.move(board_id, k, (stage, state), (stage, JobState.CANCELLED.value))
            n += len(rows)
            if rows:
                conn.execute(_NEW_EVENT, [_event(board_id, EventKind.CANCELLED, now,
                                                 job_id=r.id, stage=r.stage) for r in rows])
        tally.apply(conn, now)
    live.mark_dirty(board_id)
    return n


MAX_NOTES_PER_ATTEMPT = 10_000  # a chatty job cannot fill the database: the rest are dropped
_COUNT_NOTES = (update(ATTEMPTS).where(ATTEMPTS.c.id == bindparam("attempt"))
                .values(notes=ATTEMPTS.c.notes + bindparam("n")))


def _keep_notes(conn: Connection, board_id: int, worker: str, found: dict[int, Any],
                notes: dict[int, list[dict[str, str]]], now: float) -> None:
    """Keep what running jobs wrote as @event/@log/@var lines as their
    events, up to MAX_NOTES_PER_ATTEMPT an attempt (one last note says how
    many more were dropped)."""
    events, counted = [], []
    for a, ns in notes.items():
        if a not in found or found[a].worker != worker or not ns:
            continue
        room = MAX_NOTES_PER_ATTEMPT - found[a].notes
        if room <= 0:
            continue
        kept = ns[:room]
        if len(ns) > room:  # the last room is for saying so, once
            kept = ns[:room - 1] + [{"kind": "log", "message": (
                f"more notes dropped: at most {MAX_NOTES_PER_ATTEMPT} are kept an attempt")}]
        events += [_event(board_id, NOTE_KINDS[n["kind"]], now, job_id=found[a].job_id,
                          stage=found[a].stage,
                          detail={k: _text(str(v), MAX_ERROR) for k, v in n.items()
                                  if k != "kind"})
                   for n in kept]
        counted.append({"attempt": a, "n": len(kept)})
    if events:
        conn.execute(_NEW_EVENT, events)
    if counted:
        conn.execute(_COUNT_NOTES, counted)


_KEEP_ALIVE = (
    update(JOBS)
    .where(JOBS.c.id.in_(
        select(ATTEMPTS.c.job_id)
        .where(ATTEMPTS.c.board_id == bindparam("b"), ATTEMPTS.c.worker == bindparam("w"),
               ATTEMPTS.c.ended_at.is_(None))
        .scalar_subquery()))
    .values(heartbeat_at=bindparam("now"))
)


def heartbeat(board_id: int, worker: str, running: Sequence[int] = (),
              samples: dict[int, dict[str, Any]] | None = None, host: str | None = None,
              pid: int | None = None, resources: dict[str, Any] | None = None,
              stopped: bool = False, logs: dict[int, str] | None = None,
              notes: dict[int, list[dict[str, str]]] | None = None,
              allocation: str | None = None,
              chunks: dict[int, list[dict[str, Any]]] | None = None
              ) -> dict[str, list[int]]:
    """A worker says it is alive: its leased jobs' lifetimes start again now.
    Answers which of its ``running`` attempts it must stop: ``cancelled``
    (the job was cancelled) and ``lost`` (the attempt ended without it,
    e.g. requeued after a silence).  ``logs``: the output tails of running
    attempts, kept with them so that a page shows them while the job runs.
    ``notes``: what running jobs wrote as @event/@log/@var lines, kept as
    their jobs' events.  ``samples`` also go to the resource log, with the
    ``allocation`` (batch job) the worker runs in.  ``chunks``: what running
    attempts printed since the last beat, both streams in the order it came
    (live logs, lifecycle/logs.py)."""
    now = time.time()
    samples = samples or {}
    with write_transaction(_engine(), durable=False) as conn:
        # jobs, then attempts, then the worker's row: the order the sweep
        # locks them in (a heartbeat and a sweep must not wait on each other)
        conn.execute(_KEEP_ALIVE, {"b": board_id, "w": worker, "now": now})
        asked = (set(running) | set(logs or ()) | set(notes or ()) | set(samples)
                 | set(chunks or ()))
        found = _open_attempts(conn, board_id, asked) if asked else {}
        touch_worker(conn, board_id, worker, now, host=host, pid=pid,
                     resources=json.dumps(resources) if resources else None,
                     allocation=allocation)
        if stopped:  # a clean exit: not to be reported lost later
            conn.execute(update(WORKERS).where(WORKERS.c.board_id == board_id,
                                               WORKERS.c.name == worker)
                         .values(state=WorkerState.STOPPED.value))
            conn.execute(_NEW_EVENT, _event(board_id, EventKind.WORKER_STOPPED, now,
                                            detail={"worker": worker}))
        tails = [{"attempt": a, "tail": _text(t, MAX_LOG)} for a, t in (logs or {}).items()
                 if a in found and found[a].worker == worker]
        if tails:
            conn.execute(_KEEP_LOG, tails)
        _keep_notes(conn, board_id, worker, found, notes or {}, now)
        samples = {a: s for a, s in samples.items() if a in found and found[a].worker == worker}
        if samples:
            conn.execute(update(ATTEMPTS).where(ATTEMPTS.c.id == bindparam("attempt"))
                         .values(resources=bindparam("sample")),
                         [{"attempt": a, "sample": json.dumps(s)} for a, s in samples.items()])
            record_samples(conn, samples, {a: allocation or found[a].allocation
                                           for a in samples}, now)
        keep_chunks(conn, board_id, worker, found, chunks, now)  # last: see logs.py
    return {"cancelled": [a for a in running if a in found and found[a].state != ACTIVE],
            "lost": [a for a in running if a not in found]}
