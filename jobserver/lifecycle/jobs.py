"""Jobs in and out: push, claim and the classic report (update_job)."""
from __future__ import annotations

import functools
import json
import time
from typing import Any, Iterable, NamedTuple

from sqlalchemy import (Connection, bindparam, exists, func, literal_column, select, text,
                        update)

from .. import live, sweeper, wakeup
from ..dialect import (Hot, insert_ignore, insert_rows_ignore, insert_rows_returning, json_object,
                       write_transaction)
from ..extensions import socketio
from ..models import EventKind, Outcome, WorkerState
from . import deps
from .counters import COUNTS, Tally
from .common import (ACTIVE, ATTEMPTS, BOARDS, DEPS, EVENTS, JOBS, WORKERS, _CLOSE_ATTEMPT,
                     _JOB_EVENT, _LAST_STAGE, _NEW_EVENT, _STAGE_OK, ClaimedJob, Conflict,
                     LifecycleError, NewJob, NotFound, _check_stages, _dialect, _engine, _event,
                     chunked)
from .boards import is_capped
from .deps import BLOCKED, Extras

PUSH_CHUNK = 5000
_PUSH_COLUMNS = ["board_id", "key", "payload", "stage", "entered_at", "flagged", "attempts",
                 "state", "priority", "max_attempts", "waiting_on"]

_CLAIM = Hot(
    update(JOBS)
    .where(JOBS.c.id.in_(
        select(JOBS.c.id)
        # the state written out, not bound: SQLite ran the claim three times
        # slower with "state = ?" (measured: 0.25 against 0.07 ms)
        .where(JOBS.c.board_id == bindparam("b"), JOBS.c.stage == bindparam("from_stage"),
               JOBS.c.state == literal_column(f"'{ACTIVE}'"))
        .order_by(JOBS.c.priority.desc(), JOBS.c.entered_at, JOBS.c.id)
        .limit(bindparam("n"))
        .with_for_update(skip_locked=True)  # PostgreSQL; SQLite locks the whole file
        .scalar_subquery()),
        _STAGE_OK)
    .values(stage=bindparam("to_stage"), entered_at=bindparam("now"), flagged=False,
            attempts=JOBS.c.attempts + 1, heartbeat_at=bindparam("hb"))
    .returning(JOBS.c.id, JOBS.c.key, JOBS.c.payload, JOBS.c.attempts, JOBS.c.priority)
)

_CAP = select(BOARDS.c.max_running).where(BOARDS.c.id == bindparam("b"))
# PostgreSQL: claims of a capped board take turns, so that two of them
# cannot both see the last free slot (SQLite has one writer anyway)
# (NO KEY UPDATE: rows inserted meanwhile that reference the board, such
# as attempts, take KEY SHARE locks on it, which must not wait for this)
_CAP_TURN = _CAP.with_for_update(key_share=True)
_RUNNING = (select(func.coalesce(func.sum(COUNTS.c.n), 0))
            .where(COUNTS.c.board_id == bindparam("b"), COUNTS.c.state == ACTIVE,
                   COUNTS.c.stage % 2 == 1))


def _free_slots(conn: Connection, board_id: int, n: int) -> int:
    """How many of ``n`` jobs a claim may take under the board's max_running."""
    if not is_capped(conn, board_id):
        return n
    cap = conn.execute(_CAP_TURN if conn.dialect.name == "postgresql" else _CAP,
                       {"b": board_id}).scalar()
    if cap is None:
        return n
    return max(0, min(n, cap - conn.execute(_RUNNING, {"b": board_id}).scalar_one()))


# The job as a report finds it, with the board's last stage.
_JOB_STAGE = Hot(select(JOBS.c.id, JOBS.c.stage, JOBS.c.state, JOBS.c.waiting_on,
                         _LAST_STAGE.scalar_subquery().label("last"))
                  .where(JOBS.c.board_id == bindparam("b"), JOBS.c.key == bindparam("k"))
                  .with_for_update(of=JOBS))  # PostgreSQL: the move below is counted from this
# Whether other jobs still wait for the moved job, answered by the move
# itself: read in a statement that starts once the job is locked, so that it
# sees the dependencies of a push that held the job until it committed
# (the locking SELECT's own snapshot may be older than that push).
DOWNSTREAM = exists().where(DEPS.c.upstream_id == JOBS.c.id,
                            DEPS.c.satisfied.is_(False)).label("downstream")
_ATTEMPT_COLUMNS = ("job_id", "board_id", "stage", "worker", "host", "started_at", "ended_at",
                    "outcome", "allocation")
_NEW_ATTEMPT = Hot(ATTEMPTS.insert().values({c: bindparam(c) for c in _ATTEMPT_COLUMNS})
                   .returning(ATTEMPTS.c.id))
_CLOSE = Hot(_CLOSE_ATTEMPT)
# PostgreSQL: the job's open attempt closed and the report's event in one
# statement (SQLite runs the two: it has no INSERT ... in WITH)
_CLOSE_AND_EVENT = Hot(text(
    "WITH c AS (UPDATE attempts SET ended_at = :now, outcome = :result "
    "WHERE job_id = :job AND ended_at IS NULL) "
    "INSERT INTO events (board_id, job_id, kind, at, stage, count, detail) "
    "VALUES (:board_id, :job_id, :kind, :at, :stage, 1, :detail)"))
_NEW_ATTEMPTS = ATTEMPTS.insert().returning(ATTEMPTS.c.id, ATTEMPTS.c.job_id)


def _claim_event(board_id: int, now: float, job_id: int, stage: int, worker: str | None,
                 attempt_id: int) -> dict[str, Any]:
    detail = ('{"attempt":%d}' % attempt_id if worker is None
              else json.dumps({"attempt": attempt_id, "worker": worker}))
    return {"board_id": board_id, "job_id": job_id, "kind": EventKind.CLAIMED.value, "at": now,
            "stage": stage, "detail": detail}


def _claim_detail(worker: str | None) -> str:
    """The claimed event's detail past its attempt id (PostgreSQL splices
    the id in: ``{"attempt": <id>`` + this)."""
    return "}" if worker is None else ', "worker": %s}' % json.dumps(worker)


# PostgreSQL: an attempt and its claimed event in one statement (each
# statement is a round trip there: about 0.3 ms of the server's CPU)
_NEW_ATTEMPT_AND_EVENT = Hot(text(
    "WITH a AS (INSERT INTO attempts (%s) VALUES (%s) RETURNING id, job_id, board_id, stage, "
    "started_at), e AS (INSERT INTO events (board_id, job_id, kind, at, stage, count, detail) "
    "SELECT board_id, job_id, '%s', started_at, stage, 1, "
    "'{\"attempt\": ' || id || :detail FROM a) SELECT id FROM a" % (
        ", ".join(_ATTEMPT_COLUMNS), ", ".join(f":{c}" for c in _ATTEMPT_COLUMNS),
        EventKind.CLAIMED.value)))


def attempt_events(conn: Connection, kind: EventKind, attempt_ids: list[int],
                   stage: int | None = None) -> None:
    """One event per attempt, of these attempts' jobs, written by the
    database in one statement (batches): at the attempt's start time for
    claims, else now at ``stage``; the attempt (and its worker) in the
    detail."""
    dialect = conn.dialect.name
    detail = json_object(dialect, ("attempt", ATTEMPTS.c.id),
                         *([("worker", ATTEMPTS.c.worker)] if kind == EventKind.CLAIMED else []))
    when = ATTEMPTS.c.started_at if kind == EventKind.CLAIMED else ATTEMPTS.c.ended_at
    where = ATTEMPTS.c.stage if stage is None else literal_column(str(int(stage)))
    for part in chunked(attempt_ids):
        conn.execute(EVENTS.insert().from_select(
            _EVENT_OF_JOB,
            select(ATTEMPTS.c.board_id, ATTEMPTS.c.job_id, literal_column(f"'{kind.value}'"),
                   when, where, literal_column("1"), detail)
            .where(ATTEMPTS.c.id.in_(part))))


@functools.lru_cache(maxsize=8)
def _update_statement(with_filename: bool, with_payload: bool, forward: bool) -> Any:
    """The classic report's UPDATE, built once per combination of fields.
    A move ``forward`` (to a higher stage) is a success: the job's attempt
    budget starts afresh at its new stage."""
    values: dict[str, Any] = {"stage": bindparam("to_stage"), "entered_at": bindparam("now"),
                              "flagged": False, "state": bindparam("new_state")}
    if forward:
        values["attempts"] = 0
    if with_filename:
        values["filename"] = bindparam("new_filename")
    if with_payload:
        values["payload"] = bindparam("new_payload")
    return Hot(update(JOBS).where(JOBS.c.id == bindparam("job")).values(**values)
               .returning(DOWNSTREAM))


class PushResult(NamedTuple):
    created: int
    existing: int
    changed: list[str]  # existing keys whose payload or upstream jobs differ


def push(board_id: int, jobs: Iterable[NewJob | tuple[str, str, int]]) -> tuple[int, int]:
    """Add the jobs whose keys the board does not have yet (idempotent).
    Returns (created, existing); see push_jobs."""
    result = push_jobs(board_id, jobs)
    return result.created, result.existing


def push_jobs(board_id: int, jobs: Iterable[NewJob | tuple[str, str, int]],
              extras: dict[str, Extras] | None = None, strict: bool = False) -> PushResult:
    """Add the jobs whose keys the board does not have yet; the others are
    left as they are (pushing a workflow again is its resume).  A job is a
    NewJob or the same plain (key, payload JSON text, stage) triple (cheaper
    to build by the million); ``extras`` maps keys to their upstream jobs,
    priority and attempts.  The answer names the existing keys whose payload
    or upstream jobs differ from what was pushed; ``strict`` refuses such a
    push (Conflict) instead.

    Everything is checked before anything is written (stages, unknown
    upstream keys, cycles), so bad input writes nothing.  Large lists are
    written in chunks of PUSH_CHUNK jobs, one transaction each, upstream
    jobs first, yielding between chunks so that a million-job push does not
    hold the database (or an eventlet hub) for seconds; a push cut short by
    a crash is completed by pushing again."""
    jobs = list(jobs)
    if not jobs:
        return PushResult(0, 0, [])
    extras = extras or {}
    workflow = any(e.after for e in extras.values())
    plan = None
    with _engine().connect() as conn:
        _check_stages(conn, board_id, *{stage for _, _, stage in jobs})
        if workflow or strict:
            plan = _plan(conn, board_id, jobs, extras, workflow)
    if plan is not None and strict and plan.changed:
        raise Conflict(f"{len(plan.changed)} job(s) of this push exist already with another "
                       f"payload or other 'after' jobs: nothing was pushed (push without "
                       f"strict to keep the stored ones)", {"changed_keys": plan.changed[:50]})
    if plan is not None and workflow:
        created = _write_workflow(board_id, jobs, extras, plan)
        changed = plan.changed
    else:
        created, changed = _write_flat(board_id, jobs, extras, check=plan is None)
        if plan is not None:
            changed = plan.changed
    live.mark_dirty(board_id)
    wakeup.work_arrived(board_id)
    sweeper.note_growth(created)
    return PushResult(created, len(jobs) - created, changed)


class _Plan(NamedTuple):
    existing: dict[str, Any]  # key -> stored row, of pushed and upstream keys
    order: list[str]  # the new keys, upstream jobs first
    changed: list[str]
    last: int | None  # the board's last stage


def _plan(conn: Connection, board_id: int, jobs: list, extras: dict[str, Extras],
          workflow: bool) -> _Plan:
    """Read what exists, check the new jobs' upstream keys and cycles."""
    firsts = _firsts(jobs)
    first = {k: payload for k, (_, payload, _) in firsts.items()}
    upstream = {a for e in extras.values() for a in e.after}
    existing = deps.existing_jobs(conn, board_id, [*first, *(upstream - first.keys())])
    last = conn.execute(_LAST_STAGE, {"b": board_id}).scalar()
    new = {k: extras[k].after if k in extras else () for k in first if k not in existing}
    if workflow:
        if last is None:
            raise LifecycleError("this board has no declared stages, so no job is ever done: "
                                 "declare them (/init or board create) before using 'after'")
        deps.check_after(new, set(first) | set(existing))
        odd = [k for k, (_, _, stage) in firsts.items() if new.get(k) and stage % 2]
        if odd:
            raise LifecycleError(f"jobs with 'after' wait at an even stage; these are pushed at "
                                 f"odd (running) stages: {deps.named(odd)}; nothing was pushed")
    order = deps.upstream_first(new) if workflow else list(new)
    mine = [k for k in first if k in existing]
    return _Plan(existing, order, _changed(conn, mine, first, extras, existing), last)


def _firsts(jobs: list) -> dict[str, tuple[str, str, int]]:
    """Each key's first job in a push (a repeated key is the first one's)."""
    first: dict[str, tuple[str, str, int]] = {}
    for job in jobs:
        first.setdefault(job[0], job)
    return first


def _same_payload(stored: str, pushed: str) -> bool:
    return stored == pushed or json.loads(stored) == json.loads(pushed)


def _changed(conn: Connection, keys: list[str], payloads: dict[str, str],
             extras: dict[str, Extras], stored: dict[str, Any]) -> list[str]:
    """The existing ``keys`` whose stored payload or upstream keys differ
    from the pushed ones."""
    if not keys:
        return []
    ups = deps.stored_upstream(conn, [stored[k].id for k in keys])
    return [k for k in keys
            if not _same_payload(stored[k].payload, payloads[k])
            or ups.get(stored[k].id, set()) != set(extras[k].after if k in extras else ())]


def _row(board_id: int, job: tuple[str, str, int], extra: Extras | None, now: float,
         state: str = ACTIVE, waiting_on: int = 0) -> tuple:
    key, payload, stage = job
    if extra is None:
        return (board_id, key, payload, stage, now, False, 0, state, 0, None, waiting_on)
    return (board_id, key, payload, stage, now, False, 0, state, extra.priority,
            extra.max_attempts, waiting_on)


_NEWEST_JOB = select(func.max(JOBS.c.id))
_TAKE_WRITE_LOCK = (update(BOARDS).where(BOARDS.c.id == bindparam("b"))
                    .values(max_attempts=BOARDS.c.max_attempts))
_EVENT_OF_JOB = [EVENTS.c.board_id, EVENTS.c.job_id, EVENTS.c.kind, EVENTS.c.at, EVENTS.c.stage,
                 EVENTS.c.count, EVENTS.c.detail]


def _pushed_events(conn: Connection, board_id: int, now: float, since: int | None = None,
                   ids: list[int] | None = None) -> None:
    """A PUSHED event for each new job, written by the database from the
    jobs table: those of ``ids``, or (SQLite, one writer at a time) every
    job of the board above id ``since``; then a BLOCKED event for those
    that wait for upstream jobs (a workflow's, which come with ``ids``)."""
    def events_of(kind: EventKind) -> Any:
        return select(JOBS.c.board_id, JOBS.c.id, literal_column(f"'{kind.value}'"),
                      literal_column(repr(float(now))), JOBS.c.stage, literal_column("1"),
                      literal_column("NULL"))

    if ids is None:
        conn.execute(EVENTS.insert().from_select(_EVENT_OF_JOB, events_of(EventKind.PUSHED).where(
            JOBS.c.id > since, JOBS.c.board_id == board_id)))
        return
    for part in chunked(ids, PUSH_CHUNK):
        conn.execute(EVENTS.insert().from_select(
            _EVENT_OF_JOB, events_of(EventKind.PUSHED).where(JOBS.c.id.in_(part))))
        conn.execute(EVENTS.insert().from_select(
            _EVENT_OF_JOB, events_of(EventKind.BLOCKED).where(JOBS.c.id.in_(part),
                                                              JOBS.c.state == BLOCKED)))


def _write_flat(board_id: int, jobs: list, extras: dict[str, Extras],
                check: bool) -> tuple[int, list[str]]:
    """Jobs without upstream jobs, by chunks; with ``check``, the existing
    keys of each chunk are compared with what was pushed."""
    now = time.time()
    created = 0
    changed: list[str] = []
    tally = Tally()
    for i in range(0, len(jobs), PUSH_CHUNK):
        chunk = jobs[i:i + PUSH_CHUNK]
        by_stage: dict[int, list[tuple]] = {}
        for job in chunk:
            by_stage.setdefault(job[2], []).append(_row(board_id, job, extras.get(job[0]), now))
        with write_transaction(_engine()) as conn:
            n = 0
            sqlite = conn.dialect.name == "sqlite"
            since = None
            if sqlite:
                # the file's write lock first (a write that changes nothing):
                # no other process may add jobs between this read and the
                # insert, or their events would be written twice
                conn.execute(_TAKE_WRITE_LOCK, {"b": board_id})
                since = conn.execute(_NEWEST_JOB).scalar() or 0
            for stage, rows in by_stage.items():  # one stage each: counts stay exact
                if sqlite:
                    added = insert_rows_ignore(conn, JOBS, ["board_id", "key"], _PUSH_COLUMNS,
                                               rows)
                else:  # the new jobs' ids, for their events
                    ids = [r.id for r in insert_rows_returning(
                        conn, JOBS, ["board_id", "key"], _PUSH_COLUMNS, rows, ("id",))]
                    added = len(ids)
                    _pushed_events(conn, board_id, now, ids=ids)
                tally.move(board_id, added, None, (stage, ACTIVE))
                n += added
            if n:
                if sqlite:
                    _pushed_events(conn, board_id, now, since=since)
                tally.apply(conn, now)
            if check and n < len(chunk):  # some existed: those just added compare equal
                payloads = {}
                for key, payload, _ in chunk:
                    payloads.setdefault(key, payload)
                stored = deps.existing_jobs(conn, board_id, list(payloads))
                changed += _changed(conn, list(payloads), payloads, extras, stored)
        created += n
        socketio.sleep(0)  # let other requests in between chunks
    return created, changed


def _write_workflow(board_id: int, jobs: list, extras: dict[str, Extras], plan: _Plan) -> int:
    """The new jobs, upstream jobs first, by chunks, with their Dependency
    rows; a job whose upstream jobs are not all done is BLOCKED.  Whether an
    upstream job written earlier is done is read (and locked) in the chunk's
    own transaction: a worker may have finished it meanwhile.  A key that
    another push wrote meanwhile is left as that push wrote it (and counted
    as existing)."""
    now = time.time()
    last = plan.last
    pushed = _firsts(jobs)
    ids = {k: r.id for k, r in plan.existing.items()}
    created = 0
    tally = Tally()
    for i in range(0, len(plan.order), PUSH_CHUNK):
        chunk = plan.order[i:i + PUSH_CHUNK]
        with write_transaction(_engine()) as conn:
            meanwhile = deps.existing_jobs(conn, board_id, chunk)
            if meanwhile:  # another push wrote them since the plan was made
                ids.update((k, r.id) for k, r in meanwhile.items())
                chunk = [k for k in chunk if k not in meanwhile]
            inside = set(chunk)
            outside = {a for k in chunk if k in extras for a in extras[k].after
                       if a not in inside}
            done_ids = deps.done_among(conn, [ids[a] for a in outside], last)
            rows, satisfied = [], {}
            for key in chunk:
                after = extras[key].after if key in extras else ()
                done = {a for a in after if (ids.get(a) in done_ids if a not in inside
                                             else pushed[a][2] == last)}
                satisfied[key] = done
                blocked = len(after) > len(done) and pushed[key][2] < last
                rows.append(_row(board_id, pushed[key], extras.get(key), now,
                                 BLOCKED if blocked else ACTIVE, len(after) - len(done)))
            added = {r.key: r.id for r in insert_rows_returning(
                conn, JOBS, ["board_id", "key"], _PUSH_COLUMNS, rows, ("id", "key"))}
            if len(added) < len(rows):  # one was written since the read above
                raise Conflict("another push of the same jobs is under way: nothing of this "
                               "chunk was written; push again (it is idempotent)")
            ids.update(added)
            edges = [(ids[a], ids[key], a in satisfied[key])
                     for key in chunk if key in added and key in extras
                     for a in extras[key].after]
            deps.add_edges(conn, edges)
            for row in rows:
                if row[1] in added:  # (board_id, key, payload, stage, ..., state, ...)
                    tally.move(board_id, 1, None, (row[3], row[7]))
            if added:
                _pushed_events(conn, board_id, now, ids=list(added.values()))
                tally.apply(conn, now)
        created += len(added)
        socketio.sleep(0)
    return created


def claim(board_id: int, stage: int, n: int = 1, to_stage: int | None = None,
          worker: str | None = None, host: str | None = None,
          lease: bool = False, pid: int | None = None,
          allocation: str | None = None) -> list[ClaimedJob]:
    """Atomically take up to n waiting jobs at ``stage`` (highest priority,
    then oldest, first) and move them to ``to_stage`` (default stage + 1):
    one UPDATE ... RETURNING.  On a board with max_running, fewer: never
    more than that many of its jobs at odd stages.

    ``lease=True`` (API claims) makes the jobs' lifetime count from the
    worker's heartbeats and records the worker as alive."""
    to = stage + 1 if to_stage is None else to_stage
    now = time.time()
    _check_stages(None, board_id, stage, to)
    with write_transaction(_engine(), durable=False) as conn:
        n = _free_slots(conn, board_id, n)
        if lease and worker:
            touch_worker(conn, board_id, worker, now, host=host, pid=pid, allocation=allocation)
        rows = _CLAIM.all(conn, {"b": board_id, "from_stage": stage, "n": n, "to_stage": to,
                                 "top": max(stage, to), "now": now,
                                 "hb": now if lease else None}) if n else []
        if not rows:
            _check_stages(conn, board_id, stage, to)
            return []
        # RETURNING has no order: the claim's (ids grow with age)
        rows.sort(key=lambda r: (-r.priority, r.id))
        attempts = [{"job_id": r.id, "board_id": board_id, "stage": stage, "worker": worker,
                     "host": host, "started_at": now, "ended_at": None,
                     "outcome": Outcome.RUNNING.value, "allocation": allocation}
                    for r in rows]
        tally = Tally()
        tally.move(board_id, len(rows), (stage, ACTIVE), (to, ACTIVE))
        if to % 2 == 0 and to == conn.execute(_LAST_STAGE, {"b": board_id}).scalar():
            # a claim that jumps to the last stage finishes its jobs
            tally.reach(board_id, to, len(rows))
            deps.release(conn, [r.id for r in rows], tally, now)
        if len(attempts) == 1 and conn.dialect.name == "postgresql":
            # one round trip: the attempt and its event in one statement
            attempt_ids = [_NEW_ATTEMPT_AND_EVENT.first(conn, {
                **attempts[0], "detail": _claim_detail(worker)}).id]
        elif len(attempts) == 1:
            attempt_ids = [_NEW_ATTEMPT.first(conn, attempts[0]).id]
            _JOB_EVENT.run(conn, _claim_event(board_id, now, rows[0].id, stage, worker,
                                              attempt_ids[0]))
        else:  # one multi-row INSERT; RETURNING order is not guaranteed: map by job
            by_job = {r.job_id: r.id for r in conn.execute(_NEW_ATTEMPTS, attempts)}
            attempt_ids = [by_job[r.id] for r in rows]
            attempt_events(conn, EventKind.CLAIMED, attempt_ids)
        tally.apply(conn, now)  # last: the board's counter rows are locked until commit
    live.mark_dirty(board_id)
    return [ClaimedJob(r.id, r.key, r.payload, stage, a, r.attempts)
            for r, a in zip(rows, attempt_ids)]


def update_job(board_id: int, key: str, stage: int, filename: str | None = None,
               payload: str | None = None) -> int:
    """Put a job at ``stage`` (the classic report): clears its flag, stamps
    the time, closes its open attempt.  Returns the job id."""
    now = time.time()
    _check_stages(None, board_id, stage)
    with write_transaction(_engine(), durable=False) as conn:
        before = _JOB_STAGE.first(conn, {"b": board_id, "k": key})
        if before is None or (before.last is not None and stage > before.last):
            _check_stages(conn, board_id, stage)
            raise NotFound(f"no job {key} in this job list")
        forward = stage > before.stage
        # a job that still waits for upstream jobs stays blocked, wherever
        # it is put (but at the last stage it is done)
        state = (BLOCKED if before.waiting_on > 0 and (before.last is None or stage < before.last)
                 else ACTIVE)
        params: dict[str, Any] = {"job": before.id, "to_stage": stage, "now": now,
                                  "new_state": state}
        if filename is not None:
            params["new_filename"] = filename
        if payload is not None:
            params["new_payload"] = payload
        moved = _update_statement(filename is not None, payload is not None, forward).first(
            conn, params)
        tally = Tally()
        tally.move(board_id, 1, (before.stage, before.state), (stage, state))
        if forward:
            tally.reach(board_id, stage)
            if stage == before.last and moved.downstream:
                deps.release(conn, [before.id], tally, now)
        kind = (EventKind.DONE if forward and stage == before.last else
                EventKind.ADVANCED if forward else EventKind.RELEASED)
        closing = {"job": before.id, "now": now, "result": Outcome.ADVANCED.value}
        event = {"board_id": board_id, "job_id": before.id, "kind": kind.value, "at": now,
                 "stage": stage, "detail": None}
        if conn.dialect.name == "postgresql":  # one round trip
            _CLOSE_AND_EVENT.run(conn, {**closing, **event})
        else:
            _CLOSE.run(conn, closing)
            _JOB_EVENT.run(conn, event)
        tally.apply(conn, now)  # last: the board's counter rows are locked until commit
    live.mark_dirty(board_id)
    wakeup.work_arrived(board_id)
    return before.id


_TOUCH = (
    update(WORKERS)
    .where(WORKERS.c.board_id == bindparam("b"), WORKERS.c.name == bindparam("w"))
    .values(last_seen=bindparam("now"), state=WorkerState.ALIVE.value,
            host=func.coalesce(bindparam("new_host"), WORKERS.c.host),
            allocation=func.coalesce(bindparam("new_allocation"), WORKERS.c.allocation),
            pid=func.coalesce(bindparam("new_pid"), WORKERS.c.pid),
            resources=func.coalesce(bindparam("new_resources"), WORKERS.c.resources))
)
# a worker known alive (nearly every claim and heartbeat); else one back
# from lost or stopped (its event), else a new one
_TOUCH_ALIVE = Hot(_TOUCH.where(WORKERS.c.state == literal_column(
    f"'{WorkerState.ALIVE.value}'")))
_TOUCH_WORKER = Hot(_TOUCH)


def touch_worker(conn: Connection, board_id: int, name: str, now: float,
                 host: str | None = None, pid: int | None = None,
                 resources: str | None = None, allocation: str | None = None) -> None:
    """Record that a worker is alive now (created on first sight; its
    coming, or coming back after it was lost or stopped, is an event)."""
    params = {"b": board_id, "w": name, "now": now, "new_host": host, "new_pid": pid,
              "new_resources": resources, "new_allocation": allocation}
    if _TOUCH_ALIVE.run(conn, params):
        return
    back = _TOUCH_WORKER.run(conn, params)
    if not back and not conn.execute(insert_ignore(WORKERS, ["board_id", "name"], _dialect())
                                     .values(board_id=board_id, name=name, first_seen=now,
                                             last_seen=now, state=WorkerState.ALIVE.value,
                                             host=host, pid=pid, resources=resources,
                                             allocation=allocation)).rowcount:
        return  # another request of the same worker added it meanwhile
    detail = {"worker": name, "host": host, "pid": pid, "allocation": allocation}
    if back:
        detail["back"] = True
    conn.execute(_NEW_EVENT, _event(board_id, EventKind.WORKER_ALIVE, now, detail=detail))
