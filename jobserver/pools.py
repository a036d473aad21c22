"""The read side of pools: the batch allocations a board's pools reported,
the board page's Pools card, and the resource log of a job's attempts."""
from __future__ import annotations

import time
from typing import Any

from sqlalchemy import case, exists, func, select

from .extensions import db
from .models import (Allocation, AllocationState, Attempt, Event, EventKind, Job, Outcome,
                     Sample, Worker, WorkerState)
from .queries import end_read

ALLOCATIONS = Allocation.__table__
ATTEMPTS = Attempt.__table__
EVENTS = Event.__table__
JOBS = Job.__table__
SAMPLES = Sample.__table__
WORKERS = Worker.__table__

MAX_ALLOCATIONS_SHOWN = 200


def list_allocations(board_id: int, limit: int = MAX_ALLOCATIONS_SHOWN,
                     only: str | None = None) -> list[dict[str, Any]]:
    """The board's allocations (or the one named ``only``), newest first,
    with the workers alive in each, the jobs they hold and the attempts that
    ended lost in them."""
    q = select(ALLOCATIONS).where(ALLOCATIONS.c.board_id == board_id)
    if only is not None:
        q = q.where(ALLOCATIONS.c.id == only)
    rows = db.session.execute(q.order_by(ALLOCATIONS.c.submitted_at.desc()).limit(limit)).all()
    ids = [r.id for r in rows]
    workers: dict[str, int] = {}
    running: dict[str, int] = {}
    lost: dict[str, int] = {}
    if ids:
        workers = dict(db.session.execute(
            select(WORKERS.c.allocation, func.count())
            .where(WORKERS.c.board_id == board_id, WORKERS.c.allocation.in_(ids),
                   WORKERS.c.state == WorkerState.ALIVE.value)
            .group_by(WORKERS.c.allocation)).all())
        # open attempts per allocation: one index seek per alive worker
        running = dict(db.session.execute(
            select(ATTEMPTS.c.allocation, func.count())
            .where(ATTEMPTS.c.board_id == board_id, ATTEMPTS.c.ended_at.is_(None),
                   ATTEMPTS.c.worker.in_(select(WORKERS.c.name).where(
                       WORKERS.c.board_id == board_id, WORKERS.c.allocation.in_(ids))))
            .group_by(ATTEMPTS.c.allocation)).all())
        lost = dict(db.session.execute(
            select(ATTEMPTS.c.allocation, func.count())
            .where(ATTEMPTS.c.board_id == board_id, ATTEMPTS.c.outcome == Outcome.LOST.value,
                   ATTEMPTS.c.worker.in_(select(WORKERS.c.name).where(
                       WORKERS.c.board_id == board_id, WORKERS.c.allocation.in_(ids))),
                   ATTEMPTS.c.allocation.in_(ids))
            .group_by(ATTEMPTS.c.allocation)).all())
    end_read()
    return [{"id": r.id, "pool": r.pool, "scheduler": r.scheduler, "state": r.state,
             "reason": r.reason, "nodes": r.nodes, "workers_per_node": r.workers_per_node,
             "time_limit_s": r.time_limit_s, "submitted_at": r.submitted_at,
             "started_at": r.started_at, "ended_at": r.ended_at,
             "workers": workers.get(r.id, 0), "running": running.get(r.id, 0),
             "lost_attempts": lost.get(r.id, 0)} for r in rows]


RESOURCE_COLUMNS = ("attempt_id", "stage", "at", "host", "allocation", "cpu_percent",
                    "rss_bytes", "runtime_s")


def job_resources(board_id: int, key: str) -> list[dict[str, Any]] | None:
    """A job's resource log: every sample of every attempt, oldest first
    (None: no such job)."""
    if "\x00" in key:
        return None
    job_id = db.session.execute(select(JOBS.c.id).where(JOBS.c.board_id == board_id,
                                                        JOBS.c.key == key)).scalar()
    if job_id is None:
        end_read()
        return None
    rows = db.session.execute(
        select(SAMPLES.c.attempt_id, ATTEMPTS.c.stage, SAMPLES.c.at, SAMPLES.c.host,
               SAMPLES.c.allocation, SAMPLES.c.cpu_percent, SAMPLES.c.rss_bytes,
               SAMPLES.c.runtime_s)
        .join(ATTEMPTS, ATTEMPTS.c.id == SAMPLES.c.attempt_id)
        .where(ATTEMPTS.c.job_id == job_id).order_by(SAMPLES.c.at, SAMPLES.c.id)).all()
    end_read()
    return [dict(zip(RESOURCE_COLUMNS, r)) for r in rows]


RECENT_ALLOCATIONS = 20  # rows of the board page's table of allocations


def pools(board_id: int, now: float | None = None) -> dict[str, Any] | None:
    """The board's batch allocations as its pools reported them: how many
    are pending in the scheduler's queue, running and ended, and the recent
    ones with their workers, the jobs they hold and what became of the jobs
    lost in them.  None: the board never had an allocation."""
    now = time.time() if now is None else now
    per_state = dict(db.session.execute(
        select(ALLOCATIONS.c.state, func.count()).where(ALLOCATIONS.c.board_id == board_id)
        .group_by(ALLOCATIONS.c.state)).all())
    end_read()
    if not per_state:
        return None
    recent = list_allocations(board_id, limit=RECENT_ALLOCATIONS)
    fates = _lost_jobs(board_id, [a["id"] for a in recent if a["lost_attempts"]])
    for a in recent:
        jobs, failed = fates.get(a["id"], (0, 0))
        a["lost_jobs"], a["lost_failed"] = jobs, failed
        a["lost_text"] = _lost_text(jobs, failed)
        a["run_s"] = (None if a["started_at"] is None
                      else max((a["ended_at"] or now) - a["started_at"], 0.0))
    counts = {s.value: int(per_state.get(s.value, 0)) for s in AllocationState}
    return {**counts, "total": sum(per_state.values()), "allocations": recent}


def _lost_jobs(board_id: int, ids: list[str]) -> dict[str, tuple[int, int]]:
    """allocation -> (jobs whose attempt was lost in it, those of them that
    failed then for want of attempts instead of going back to the queue).
    The sweep that loses an attempt writes the job's 'requeued' or 'failed'
    event at the attempt's end.  The attempts are found through the
    allocation's workers (the heartbeat index), as list_allocations
    finds them."""
    if not ids:
        return {}
    failed_then = exists().where(EVENTS.c.job_id == ATTEMPTS.c.job_id,
                                 EVENTS.c.kind == EventKind.FAILED.value,
                                 EVENTS.c.at == ATTEMPTS.c.ended_at)
    rows = db.session.execute(
        select(ATTEMPTS.c.allocation, func.count(ATTEMPTS.c.job_id.distinct()),
               func.count(case((failed_then, ATTEMPTS.c.job_id)).distinct()))
        .where(ATTEMPTS.c.board_id == board_id, ATTEMPTS.c.outcome == Outcome.LOST.value,
               ATTEMPTS.c.worker.in_(select(WORKERS.c.name).where(
                   WORKERS.c.board_id == board_id, WORKERS.c.allocation.in_(ids))),
               ATTEMPTS.c.allocation.in_(ids))
        .group_by(ATTEMPTS.c.allocation)).all()
    end_read()
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def _lost_text(jobs: int, failed: int) -> str:
    """What the pools table says of an allocation's lost jobs."""
    if not jobs:
        return ""
    lost = f"{jobs} job{'s' if jobs != 1 else ''} lost"
    if not failed:
        return f"{lost} → requeued"
    if failed == jobs:
        return f"{lost} → failed (no attempts left)"
    return f"{lost} → {jobs - failed} requeued, {failed} failed (no attempts left)"


def resource_summary(board_id: int, key: str) -> dict[str, Any] | None:
    """Peaks of a job's resource log, from its samples in one aggregate
    (None: no samples, or no such job)."""
    row = db.session.execute(
        select(func.count(), func.max(SAMPLES.c.cpu_percent), func.max(SAMPLES.c.rss_bytes),
               func.max(SAMPLES.c.runtime_s), func.count(SAMPLES.c.host.distinct()))
        .select_from(SAMPLES.join(ATTEMPTS, ATTEMPTS.c.id == SAMPLES.c.attempt_id)
                     .join(JOBS, JOBS.c.id == ATTEMPTS.c.job_id))
        .where(JOBS.c.board_id == board_id, JOBS.c.key == key)).one()
    end_read()
    if not row[0]:
        return None
    return {"samples": int(row[0]), "peak_cpu_percent": row[1],
            "peak_rss_bytes": None if row[2] is None else int(row[2]),
            "max_runtime_s": row[3], "hosts": int(row[4])}
