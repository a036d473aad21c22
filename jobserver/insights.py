"""The dashboard's read side: progress, throughput, ETA, health, tables.

Everything here reads the kept counters, the per-minute throughput table,
small indexed sets (flagged, failed, workers) or one page of jobs: the cost
does not grow with the number of jobs on a board.
"""
from __future__ import annotations

import json
import time
from typing import Any, Iterable

from sqlalchemy import literal, select

from . import queries
from .extensions import db
from .queries import end_read
from .models import Board, Job, JobState, Throughput

JOBS = Job.__table__
BOARDS = Board.__table__
THROUGHPUT = Throughput.__table__

RATE_WINDOW = 5  # minutes of completions behind "current throughput" and the ETA


def throughput(board_id: int, minutes: int = 60, now: float | None = None) -> dict[str, Any]:
    """Jobs reaching each stage per minute over the last ``minutes``."""
    now = time.time() if now is None else now
    last = int(now // 60)
    rows = db.session.execute(
        select(THROUGHPUT.c.stage, THROUGHPUT.c.minute, THROUGHPUT.c.n)
        .where(THROUGHPUT.c.board_id == board_id, THROUGHPUT.c.minute > last - minutes)).all()
    end_read()
    axis = list(range(last - minutes + 1, last + 1))
    series: dict[str, list[int]] = {}
    for stage, minute, n in rows:
        series.setdefault(str(stage), [0] * minutes)[minute - axis[0]] += n
    return {"minutes": axis, "stages": series}


def overview(board_id: int, now: float | None = None,
             series: dict[str, Any] | None = None) -> dict[str, Any]:
    """Progress, rates, ETA and health of one board.  ``series``: the
    board's throughput() at the same ``now``, if the caller has it already
    (at least the last RATE_WINDOW + 1 minutes)."""
    now = time.time() if now is None else now
    status = queries.board_status(board_id)
    stage_rows = queries.stages(board_id)
    counts = {int(k): v for k, v in status["counts"].items()}
    last = max([*(r.number for r in stage_rows), *counts, 0])
    names = {r.number: r.name for r in stage_rows}
    lifetimes = {r.number: r.lifetime for r in stage_rows}
    done = counts.get(last, 0) if last else 0
    running = sum(n for s, n in counts.items() if s % 2 == 1)
    waiting = sum(n for s, n in counts.items() if s % 2 == 0 and s != last)
    live_total = status["total"] - status["cancelled"]
    remaining = max(live_total - done - status["failed"], 0)
    tp = throughput(board_id, RATE_WINDOW + 1, now) if series is None else series
    finished = tp["stages"].get(str(last), [0] * (RATE_WINDOW + 1))[-(RATE_WINDOW + 1):]
    # the current minute counts for the part of it that has passed
    elapsed = RATE_WINDOW * 60 + (now % 60)
    per_min = 60.0 * sum(finished) / elapsed
    eta = remaining / (per_min / 60.0) if per_min > 0 and remaining else None
    flagged = queries.flagged_jobs(board_id, limit=20)
    n_flagged = queries.count_flagged_fast(board_id)
    if live_total and remaining == 0:
        health, why = "done", ("every job is finished" if not status["failed"] else
                               f"every job is finished; {status['failed']} failed")
    elif status["lost_workers"] or n_flagged:
        health, why = "attention", (f"{status['lost_workers']} lost worker(s), "
                                    f"{n_flagged} job(s) overstaying their stage")
    elif remaining and not running and per_min == 0:
        health, why = "stalled", "jobs are waiting and nobody is working on them"
    elif status["failed"]:
        health, why = "attention", f"{status['failed']} job(s) failed"
    else:
        health, why = "healthy", "work is flowing"
    return {
        "total": live_total, "done": done, "waiting": waiting, "running": running,
        "failed": status["failed"], "cancelled": status["cancelled"],
        "progress": round(100.0 * done / live_total, 2) if live_total else 0.0,
        "per_minute": round(per_min, 1), "eta_seconds": None if eta is None else round(eta),
        "flagged": n_flagged, "flagged_jobs": flagged,
        "alive_workers": status["alive_workers"], "lost_workers": status["lost_workers"],
        "health": health, "health_reason": why, "last_stage": last,
        "stages": [{"stage": s, "name": names.get(s), "count": counts.get(s, 0),
                    "lifetime": lifetimes.get(s, 0.0),
                    "kind": "done" if s == last else ("running" if s % 2 else "waiting")}
                   for s in range(last + 1)],
    }


def failed_jobs(board_id: int, limit: int = 20) -> list[dict[str, Any]]:
    rows = db.session.execute(
        select(JOBS.c.key, JOBS.c.stage, JOBS.c.error, JOBS.c.attempts, JOBS.c.entered_at)
        .where(JOBS.c.board_id == board_id,
               JOBS.c.state == literal(JobState.FAILED.value, literal_execute=True))
        .order_by(JOBS.c.entered_at.desc()).limit(limit)).all()
    end_read()
    return [{"key": r.key, "stage": r.stage, "error": (r.error or "")[-500:],
             "attempts": r.attempts, "at": r.entered_at} for r in rows]


def live_payload(board_id: int) -> dict[str, Any]:
    """What the board page receives on every coalesced update."""
    now = time.time()
    series = throughput(board_id, now=now)  # read once: the chart and the rate
    out = overview(board_id, now, series)
    out["throughput"] = series
    out["workers"] = queries.list_workers(board_id)
    out["failed_jobs"] = failed_jobs(board_id)
    return out


def boards_overview(board_ids: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """Every board with its overview (the home page), or only those of
    ``board_ids`` (a live update carries just the boards that changed)."""
    q = select(BOARDS.c.id, BOARDS.c.name, BOARDS.c.jobix).order_by(BOARDS.c.id)
    if board_ids is not None:
        q = q.where(BOARDS.c.id.in_(list(board_ids)))
    boards = db.session.execute(q).all()
    end_read()
    out = []
    for b in boards:
        o = overview(b.id)
        o.pop("stages")
        o.pop("flagged_jobs")
        out.append({"name": b.name, "classic": b.jobix is not None, **o})
    return out


def job_history(board_id: int, key: str) -> dict[str, Any] | None:
    """A job with its attempts and events merged into one timeline."""
    job = queries.job_detail(board_id, key)
    if job is None:
        return None
    timeline = [{"at": a["started_at"], "what": f"claimed at stage {a['stage']}",
                 "who": a["worker"]} for a in job["attempts_history"]]
    timeline += [{"at": a["ended_at"], "what": f"attempt {a['outcome']}", "who": a["worker"]}
                 for a in job["attempts_history"] if a["ended_at"]]
    timeline += [{"at": e["at"], "what": e["kind"] + (f" (stage {e['stage']})"
                                                      if e["stage"] is not None else ""),
                  "who": None} for e in job["events"]]
    job["timeline"] = sorted(timeline, key=lambda t: t["at"])
    job["payload_text"] = json.dumps(job["payload"], indent=2)
    job["result_text"] = None if job["result"] is None else json.dumps(job["result"], indent=2)
    return job
