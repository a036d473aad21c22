"""The read side: counts per stage, pages of jobs, board overviews."""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import and_, func, literal, select, true

from .extensions import db
from .lifecycle.events import Cursor
from .models import (Attempt, Board, Dependency, Event, Job, JobState, Outcome, Stage,
                     StageCount, Status, Worker, WorkerState)

JOBS = Job.__table__
STAGES = Stage.__table__
COUNTS = StageCount.__table__
BOARDS = Board.__table__
DEPS = Dependency.__table__


def list_boards() -> list[dict[str, Any]]:
    """Every board: name, kind, creation time, jobs (from the kept counters)."""
    jobs = (select(func.coalesce(func.sum(COUNTS.c.n), 0))
            .where(COUNTS.c.board_id == BOARDS.c.id).scalar_subquery())
    rows = db.session.execute(select(BOARDS.c.id, BOARDS.c.name, BOARDS.c.jobix,
                                     BOARDS.c.created_at, jobs.label("jobs"))
                              .order_by(BOARDS.c.id)).all()
    end_read()
    return [{"id": r.id, "name": r.name, "classic": r.jobix is not None,
             "created_at": r.created_at, "jobs": int(r.jobs)} for r in rows]


def end_read() -> None:
    """End the read transaction: never hold a snapshot between requests."""
    db.session.commit()


def kept_counts(board_id: int) -> list[Any]:
    """The board's kept counters: (stage, state, n) rows, a few per board."""
    rows = db.session.execute(
        select(COUNTS.c.stage, COUNTS.c.state, COUNTS.c.n)
        .where(COUNTS.c.board_id == board_id, COUNTS.c.n != 0)).all()
    end_read()
    return rows


def waiting_counts(pairs: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """Which of these (board, stage) pairs have jobs waiting there, by the
    kept counters (the long-poll watchdog's look; cap and blocked jobs aside)."""
    boards, stages_ = {b for b, _ in pairs}, {s for _, s in pairs}
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(COUNTS.c.board_id, COUNTS.c.stage)
            .where(COUNTS.c.board_id.in_(boards), COUNTS.c.stage.in_(stages_),
                   COUNTS.c.state == JobState.ACTIVE.value, COUNTS.c.n > 0)).all()
    return {(r.board_id, r.stage) for r in rows} & set(pairs)


def status_of(stage: int, state: str, last_stage: int) -> str:
    """The state a person reads (Status) of a stored (stage, state)."""
    if state != JobState.ACTIVE.value:
        return state
    if stage % 2:
        return Status.RUNNING.value
    if last_stage and stage >= last_stage:
        return Status.DONE.value
    return Status.WAITING.value


def last_stage(board_id: int, counted: Any = None) -> int:
    """The board's last stage: its last declared stage, or on a board
    without declared stages (a classic list before /init) the highest stage
    any job has reached (``counted``: kept_counts rows, if read already)."""
    declared = db.session.execute(
        select(func.max(STAGES.c.number)).where(STAGES.c.board_id == board_id)).scalar()
    end_read()
    if declared is not None:
        return int(declared)
    rows = kept_counts(board_id) if counted is None else counted
    return max([r.stage for r in rows] + [0])


def _status_filter(board_id: int, status: str, last: int) -> list[Any]:
    """WHERE terms selecting the jobs of one Status."""
    active = JOBS.c.state == JobState.ACTIVE.value
    if status == Status.FAILED.value:
        # the few failed jobs come from their partial index (the value is
        # inlined: a bound parameter would hide the index from SQLite)
        return [JOBS.c.id.in_(
            select(JOBS.c.id).where(JOBS.c.board_id == board_id,
                                    JOBS.c.state == literal(status, literal_execute=True)))]
    if status in (Status.CANCELLED.value, Status.BLOCKED.value):
        return [JOBS.c.state == status]
    if status == Status.RUNNING.value:
        return [active, JOBS.c.stage % 2 == 1]
    if status == Status.DONE.value:
        return [active, JOBS.c.stage == last] if last else [literal(False)]
    return [active, JOBS.c.stage % 2 == 0] + ([JOBS.c.stage < last] if last else [])


STATUSES = [s.value for s in Status]


def stage_counts(board_id: int) -> tuple[dict[int, int], int, int]:
    """Active and blocked jobs per stage, the number of failed jobs and of
    blocked ones (from the kept counters: a few rows, however many jobs)."""
    rows = kept_counts(board_id)
    counts: dict[int, int] = {}
    failed = blocked = 0
    for stage, state, n in rows:
        if state in (JobState.ACTIVE.value, JobState.BLOCKED.value):
            counts[stage] = counts.get(stage, 0) + n
            if state == JobState.BLOCKED.value:
                blocked += n
        elif state == JobState.FAILED.value:
            failed += n
    return counts, failed, blocked


def stages(board_id: int) -> list[Any]:
    """The board's declared stages: (number, lifetime, name) rows in order."""
    rows = db.session.execute(
        select(STAGES.c.number, STAGES.c.lifetime, STAGES.c.name)
        .where(STAGES.c.board_id == board_id).order_by(STAGES.c.number)).all()
    end_read()
    return rows


def board_summary(board_id: int) -> dict[str, Any]:
    """Everything the job-list page shows above the table."""
    counts, failed, blocked = stage_counts(board_id)
    stage_rows = stages(board_id)
    lifetimes = {r.number: r.lifetime for r in stage_rows}
    last = max([*lifetimes, *counts, 0])
    total = sum(counts.values()) + failed
    weighted = sum(s * n for s, n in counts.items())
    progress = 100.0 * weighted / (total * last) if total and last else 0.0
    per_stage = [  # the stages that exist, never a range up to a number a client sent
        {"stage": s, "count": counts.get(s, 0), "lifetime": lifetimes.get(s, 0.0),
         "working": s % 2 == 1}
        for s in sorted({0, *lifetimes, *counts})
    ]
    return {
        "total": total,
        "done": counts.get(last, 0) if last else 0,
        "last_stage": last,
        "failed": failed,
        "blocked": blocked,
        "progress": round(progress, 2),
        "stages": per_stage,
        "flagged": flagged_jobs(board_id),
    }


def _job_dict(r: Any, last: int) -> dict[str, Any]:
    return {"id": r.key, "stage": r.stage, "file": r.filename, "entered_at": r.entered_at,
            "flagged": bool(r.flagged), "state": status_of(r.stage, r.state, last),
            "attempts": r.attempts}


def flagged_jobs(board_id: int, limit: int = 50) -> list[dict[str, Any]]:
    rows = db.session.execute(
        select(JOBS.c.key, JOBS.c.stage, JOBS.c.filename, JOBS.c.entered_at, JOBS.c.flagged,
               JOBS.c.state, JOBS.c.attempts)
        .where(JOBS.c.board_id == board_id, JOBS.c.flagged == true(),
               JOBS.c.state == JobState.ACTIVE.value)
        .order_by(JOBS.c.entered_at).limit(limit)).all()
    end_read()
    last = last_stage(board_id) if rows else 0
    return [_job_dict(r, last) for r in rows]


def count_flagged_fast(board_id: int) -> int:
    """Flagged active jobs (the partial index holds only flagged rows)."""
    n = db.session.execute(
        select(func.count()).select_from(JOBS)
        .where(JOBS.c.board_id == board_id, JOBS.c.flagged == true(),
               JOBS.c.state == JobState.ACTIVE.value)).scalar_one()
    end_read()
    return int(n)


SORTS = {"id": (JOBS.c.id,), "-id": (JOBS.c.id.desc(),),
         "stage": (JOBS.c.stage, JOBS.c.state, JOBS.c.entered_at),
         "-stage": (JOBS.c.stage.desc(), JOBS.c.state.desc(), JOBS.c.entered_at.desc())}


def job_table(board_id: int, stage: int | None = None, state: str | None = None,
              key_prefix: str | None = None, sort: str = "id", page: int = 1,
              per_page: int = 50) -> dict[str, Any]:
    """One page of the job table: filtered (``state`` is a Status),
    sorted, paginated in SQL."""
    last = last_stage(board_id)
    q = select(JOBS.c.key, JOBS.c.stage, JOBS.c.state, JOBS.c.attempts, JOBS.c.entered_at,
               JOBS.c.flagged, JOBS.c.filename, JOBS.c.error).where(JOBS.c.board_id == board_id)
    if stage is not None:
        q = q.where(JOBS.c.stage == stage)
    if state is not None:
        q = q.where(*_status_filter(board_id, state, last))
    if key_prefix:
        q = q.where(and_(JOBS.c.key >= key_prefix, JOBS.c.key < key_prefix + "\U0010ffff"))
    rows = db.session.execute(q.order_by(*SORTS[sort]).limit(per_page + 1)
                              .offset((page - 1) * per_page)).all()
    end_read()
    return {"page": page, "per_page": per_page, "has_next": len(rows) > per_page,
            "rows": [{"key": r.key, "stage": r.stage, "state": status_of(r.stage, r.state, last),
                      "attempts": r.attempts,
                      "entered_at": r.entered_at, "flagged": bool(r.flagged),
                      "file": r.filename, "error": (r.error or "")[-200:] or None}
                     for r in rows[:per_page]]}


def jobs_page(board_id: int, page: int, per_page: int, stage: int | None = None) -> dict[str, Any]:
    """One page of the classic job-list table, whose rows name a job "id"."""
    table = job_table(board_id, stage=stage, page=max(1, page), per_page=per_page)
    for row in table["rows"]:
        row["id"] = row.pop("key")
    return table


# ------------------------------------------------------------- the JSON API

WORKERS = Worker.__table__
ATTEMPTS = Attempt.__table__
EVENTS = Event.__table__


def board_status(board_id: int) -> dict[str, Any]:
    """Counts per stage (active jobs: ``counts``; every state: ``by_stage``,
    not JSON-ready as its keys are ints), per state, and the workers' health."""
    rows = kept_counts(board_id)
    workers = db.session.execute(
        select(WORKERS.c.state, func.count()).where(WORKERS.c.board_id == board_id)
        .group_by(WORKERS.c.state)).all()
    end_read()
    counts: dict[str, int] = {}
    by_state: dict[str, int] = {}
    by_stage: dict[int, dict[str, int]] = {}
    for stage, state, n in rows:
        by_state[state] = by_state.get(state, 0) + n
        by_stage.setdefault(stage, {})[state] = n
        if state == JobState.ACTIVE.value:
            counts[str(stage)] = counts.get(str(stage), 0) + n
    w = dict(workers)
    return {
        "counts": counts,
        "by_stage": by_stage,
        "total": sum(by_state.values()),
        "failed": by_state.get(JobState.FAILED.value, 0),
        "cancelled": by_state.get(JobState.CANCELLED.value, 0),
        "blocked": by_state.get(JobState.BLOCKED.value, 0),
        "alive_workers": w.get(WorkerState.ALIVE.value, 0),
        "lost_workers": w.get(WorkerState.LOST.value, 0),
    }


def lost_open_attempts(board_id: int) -> Any:
    """Open attempts of the board's lost workers, per stage claimed from."""
    return (select(ATTEMPTS.c.stage, func.count())
            .where(ATTEMPTS.c.board_id == board_id, ATTEMPTS.c.ended_at.is_(None),
                   ATTEMPTS.c.worker.in_(
                       select(WORKERS.c.name).where(WORKERS.c.board_id == board_id,
                                                    WORKERS.c.state == WorkerState.LOST.value)))
            .group_by(ATTEMPTS.c.stage))


def orphaned(board_id: int) -> dict[str, int]:
    """Running jobs per stage that will come back to the pool: their worker
    is lost, or they overstay their stage's lifetime (flagged), on a stage
    with a lifetime of a board that requeues by itself.  A worker
    that found nothing to claim waits for these before it leaves."""
    # from the (few) lost workers, one index seek each into their open
    # attempts: never a walk over the board's attempt history
    lost = db.session.execute(lost_open_attempts(board_id)).all()
    flagged = db.session.execute(
        select(JOBS.c.stage, func.count()).where(
            JOBS.c.board_id == board_id, JOBS.c.flagged == true(),
            JOBS.c.state == JobState.ACTIVE.value).group_by(JOBS.c.stage)).all()
    # only what the sweeper will requeue: a stage with a lifetime, on a
    # board that requeues by itself
    requeues = db.session.execute(
        select(Board.__table__.c.auto_requeue).where(Board.__table__.c.id == board_id)).scalar()
    timed = {r.number for r in stages(board_id) if r.lifetime > 0}
    end_read()
    out: dict[str, int] = {}
    if not requeues:
        return out
    for claimed_from, n in lost:  # shown at the running stage the job sits in
        if claimed_from + 1 in timed:
            out[str(claimed_from + 1)] = out.get(str(claimed_from + 1), 0) + n
    for stage, n in flagged:
        if stage % 2:
            out[str(stage)] = max(out.get(str(stage), 0), n)
    return out


def _api_job(r: Any, last: int) -> dict[str, Any]:
    return {"key": r.key, "stage": r.stage, "state": status_of(r.stage, r.state, last),
            "attempts": r.attempts, "priority": r.priority, "max_attempts": r.max_attempts,
            "flagged": bool(r.flagged), "entered_at": r.entered_at,
            "filename": r.filename, "error": r.error}


LIST_EXTRAS = ("payload", "result")


def list_jobs(board_id: int, stage: int | None, state: str | None, after: int,
              limit: int, include: tuple[str, ...] = ()) -> tuple[list[dict[str, Any]], int | None]:
    """A page of jobs in id order, from the cursor ``after`` (keyset paging:
    as fast on the last page as on the first).  ``state`` is a Status;
    ``include``: any of LIST_EXTRAS, parsed from their JSON."""
    last = last_stage(board_id)
    q = select(JOBS).where(JOBS.c.board_id == board_id, JOBS.c.id > after)
    if stage is not None:
        q = q.where(JOBS.c.stage == stage)
    if state is not None:
        q = q.where(*_status_filter(board_id, state, last))
    rows = db.session.execute(q.order_by(JOBS.c.id).limit(limit + 1)).all()
    end_read()
    more = len(rows) > limit
    rows = rows[:limit]
    jobs = []
    for r in rows:
        job = _api_job(r, last)
        for extra in include:
            raw = getattr(r, extra)
            job[extra] = None if raw is None else json.loads(raw)
        jobs.append(job)
    return jobs, (rows[-1].id if more else None)


MAX_EVENTS_SHOWN = 1000  # a job's latest events in its detail


def job_id_of(board_id: int, key: str) -> int | None:
    """The id of the board's job with that key (None: no such job)."""
    if "\x00" in key:
        return None
    found = db.session.execute(select(JOBS.c.id).where(JOBS.c.board_id == board_id,
                                                       JOBS.c.key == key)).scalar()
    end_read()
    return found


def job_detail(board_id: int, key: str) -> dict[str, Any] | None:
    if "\x00" in key:  # no key has one (and PostgreSQL refuses to compare it)
        return None
    job = db.session.execute(
        select(JOBS).where(JOBS.c.board_id == board_id, JOBS.c.key == key)).first()
    if job is None:
        end_read()
        return None
    attempts = db.session.execute(
        select(ATTEMPTS).where(ATTEMPTS.c.job_id == job.id).order_by(ATTEMPTS.c.id)).all()
    # the latest MAX_EVENTS_SHOWN (a job may have written thousands of notes)
    events = db.session.execute(
        select(EVENTS.c.kind, EVENTS.c.at, EVENTS.c.stage, EVENTS.c.detail, EVENTS.c.tx,
               EVENTS.c.id)
        .where(EVENTS.c.job_id == job.id).order_by(EVENTS.c.tx.desc(), EVENTS.c.id.desc())
        .limit(MAX_EVENTS_SHOWN)).all()[::-1]
    events_total = (len(events) if len(events) < MAX_EVENTS_SHOWN else db.session.execute(
        select(func.count()).select_from(EVENTS).where(EVENTS.c.job_id == job.id)).scalar_one())
    near = neighbours(job.id)
    end_read()
    last = last_stage(board_id)
    out = _api_job(job, last)
    for side in ("after", "downstream"):
        out[side] = [_neighbour(r, last) for r in near[side]]
        out[f"{side}_total"] = near[f"{side}_total"]
    out["blocked_by"] = near["blocked_by"] if job.state == JobState.BLOCKED.value else []
    out["payload"] = json.loads(job.payload)
    out["result"] = None if job.result is None else json.loads(job.result)
    out["attempts_history"] = [
        {"attempt_id": a.id, "stage": a.stage, "worker": a.worker, "host": a.host,
         "started_at": a.started_at, "ended_at": a.ended_at, "outcome": a.outcome,
         "exit_code": a.exit_code, "error": a.error, "log": a.log, "allocation": a.allocation,
         "resources": None if a.resources is None else json.loads(a.resources)}
        for a in attempts]
    out["attempts_per_stage"] = _per_stage(attempts)
    out["events"] = [{"kind": e.kind, "at": e.at, "stage": e.stage,
                      "detail": None if e.detail is None else json.loads(e.detail),
                      "cursor": str(Cursor(e.tx, e.id))}
                     for e in events]
    out["events_total"] = events_total
    logs = [a.log for a in attempts if a.log]
    out["log_tail"] = logs[-1] if logs else None
    # the latest tail at each stage: the next stage's output does not hide it
    out["log_tails"] = {str(a.stage): a.log for a in attempts if a.log}
    return out


def _neighbour(r: Any, last: int) -> dict[str, Any]:
    return {"key": r.key, "stage": r.stage, "state": status_of(r.stage, r.state, last)}


def neighbours(job_id: int, limit: int = 100) -> dict[str, Any]:
    """A job's first ``limit`` upstream and downstream jobs as (key, stage,
    state) rows, how many of each it has, and the first ``limit`` keys of
    the upstream jobs it still waits for."""
    def side(mine: Any, other: Any) -> tuple[list[Any], int]:
        rows = db.session.execute(
            select(JOBS.c.key, JOBS.c.stage, JOBS.c.state).join(DEPS, other == JOBS.c.id)
            .where(mine == job_id).order_by(JOBS.c.id).limit(limit)).all()
        total = db.session.execute(select(func.count()).select_from(DEPS)
                                   .where(mine == job_id)).scalar_one()
        return rows, total

    after, after_total = side(DEPS.c.job_id, DEPS.c.upstream_id)
    down, down_total = side(DEPS.c.upstream_id, DEPS.c.job_id)
    waiting = db.session.execute(
        select(JOBS.c.key).join(DEPS, DEPS.c.upstream_id == JOBS.c.id)
        .where(DEPS.c.job_id == job_id, DEPS.c.satisfied.is_(False))
        .order_by(JOBS.c.id).limit(limit)).scalars().all()
    return {"after": after, "after_total": after_total, "downstream": down,
            "downstream_total": down_total, "blocked_by": list(waiting)}


def _per_stage(attempts: list[Any]) -> list[dict[str, Any]]:
    """Claims, failures and losses per stage claimed from: what spends a
    job's attempts there."""
    per: dict[int, dict[str, Any]] = {}
    for a in attempts:
        row = per.setdefault(a.stage, {"stage": a.stage, "claims": 0, "failures": 0, "lost": 0,
                                       "done": 0})
        row["claims"] += 1
        if a.outcome == Outcome.FAILED.value:
            row["failures"] += 1
        elif a.outcome == Outcome.LOST.value:
            row["lost"] += 1
        elif a.outcome == Outcome.ADVANCED.value:
            row["done"] += 1
    return [per[s] for s in sorted(per)]


def list_workers(board_id: int) -> list[dict[str, Any]]:
    """The board's workers with the jobs each holds now.  The count is one
    index seek per worker (board, worker, open attempt), never a walk over
    the board's whole attempt history."""
    running = (
        select(func.count()).select_from(ATTEMPTS)
        .where(ATTEMPTS.c.board_id == WORKERS.c.board_id, ATTEMPTS.c.worker == WORKERS.c.name,
               ATTEMPTS.c.ended_at.is_(None))
        .scalar_subquery().label("running"))
    workers = db.session.execute(
        select(WORKERS, running).where(WORKERS.c.board_id == board_id)
        .order_by(WORKERS.c.name)).all()
    end_read()
    return [{"name": w.name, "host": w.host, "pid": w.pid, "state": w.state,
             "allocation": w.allocation,
             "first_seen": w.first_seen, "last_seen": w.last_seen, "running": w.running,
             "resources": None if w.resources is None else json.loads(w.resources)}
            for w in workers]
