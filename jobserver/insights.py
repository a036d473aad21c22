"""The dashboard's read side: progress, throughput, ETA, health, tables.

Everything here reads the kept counters, the per-minute throughput table,
small indexed sets (flagged, failed, workers) or one page of jobs: the cost
does not grow with the number of jobs on a board.
"""
from __future__ import annotations

import json
import time
from typing import Any, Iterable

from sqlalchemy import exists, false, func, literal, select

from . import pools, queries
from .extensions import db
from .lifecycle import events
from .queries import end_read
from .models import Board, Dependency, Job, JobState, Throughput

JOBS = Job.__table__
BOARDS = Board.__table__
THROUGHPUT = Throughput.__table__
DEPS = Dependency.__table__

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


RECENT = 30.0  # seconds: a board that finished nothing for this long while
               # nobody runs anything is idle, and its rate is 0
MIN_SPAN = 5.0  # seconds: the shortest span a rate is measured over


def rate_per_minute(board_id: int, stage: int, now: float, running: int) -> float:
    """Jobs reaching ``stage`` per minute, measured over the time the board
    has actually been working within the last RATE_WINDOW minutes: from the
    first arrival in that window (not from the window's start), so the first
    seconds of a run already show its real rate.  0 for an idle board."""
    window_start = now - RATE_WINDOW * 60
    rows = db.session.execute(
        select(THROUGHPUT.c.minute, THROUGHPUT.c.n, THROUGHPUT.c.first_at, THROUGHPUT.c.last_at)
        .where(THROUGHPUT.c.board_id == board_id, THROUGHPUT.c.stage == stage,
               THROUGHPUT.c.minute >= int(window_start // 60))).all()
    end_read()
    if not rows:
        return 0.0
    latest = max(r.last_at if r.last_at is not None else r.minute * 60.0 + 59 for r in rows)
    if not running and now - latest > RECENT:
        return 0.0
    n = 0.0
    first = now
    for r in rows:
        begin = r.minute * 60.0
        first = min(first, r.first_at if r.first_at is not None else begin)
        # the minute that straddles the window's start counts for its part in it
        n += r.n * min(1.0, (begin + 60.0 - window_start) / 60.0)
    span = max(now - max(first, window_start), MIN_SPAN)
    return 60.0 * n / span


def _health(total: int, remaining: int, failed: int, running: int, lost_workers: int,
            n_flagged: int, per_min: float, stuck: str | None = None,
            holding: str | None = None) -> tuple[str, str]:
    """A word and a reason for a board's state, worst news first.
    ``stuck``: why the only jobs left can never start (blocked behind
    failed or cancelled jobs); ``holding``: the same news while other work
    still flows."""
    if not total:
        return "idle", "no jobs yet"
    if remaining == 0:
        if failed:
            return "failed", (f"{failed} job(s) failed and nothing is left to do; "
                              f"{total - failed} done")
        return "done", "every job is done"
    if stuck:
        return ("failed" if failed else "stalled"), stuck
    if lost_workers or n_flagged:
        return "attention", (f"{lost_workers} lost worker(s), "
                             f"{n_flagged} job(s) overstaying their stage")
    if not running and per_min == 0:
        return "stalled", "jobs are waiting and nobody is working on them"
    if holding:
        return "attention", holding
    if failed:
        return "attention", f"{failed} job(s) failed"
    return "healthy", "work is flowing"


BLOCKER_SCAN = 100_000  # failed or cancelled jobs looked at for blocked downstream jobs


def blockers(board_id: int, by_stage: dict[int, dict[str, int]]) -> dict[str, int]:
    """How many failed and how many cancelled jobs hold up downstream jobs
    (a dependency on them not satisfied yet).  Read only when the kept
    counters show blocked jobs and failed or cancelled ones: the failed
    jobs come from their partial index, the cancelled ones from the stages
    the counters name, each with one primary-key seek into its
    dependencies."""
    out = {}
    for state in (JobState.FAILED.value, JobState.CANCELLED.value):
        stages = sorted(s for s, c in by_stage.items() if c.get(state))
        if not stages:
            out[state] = 0
            continue
        where = [JOBS.c.board_id == board_id,
                 JOBS.c.state == literal(state, literal_execute=True)]
        if state == JobState.CANCELLED.value:
            where.append(JOBS.c.stage.in_(stages))
        held = exists().where(DEPS.c.upstream_id == JOBS.c.id, DEPS.c.satisfied == false())
        sub = select(JOBS.c.id).where(*where, held).limit(BLOCKER_SCAN).subquery()
        out[state] = int(db.session.execute(select(func.count()).select_from(sub)).scalar_one())
    end_read()
    return out


def _blocked_news(blocked: int, held_by: dict[str, int], stuck: bool) -> str | None:
    """The health line's words for blocked jobs held up by failed or
    cancelled jobs, with the command that frees them."""
    failed, cancelled = held_by.get("failed", 0), held_by.get("cancelled", 0)
    if not (failed or cancelled):
        return (f"stuck: {blocked} job(s) blocked and nothing else is left to run"
                if stuck else None)
    behind = " and ".join([*([f"{failed} failed job(s)"] if failed else []),
                           *([f"{cancelled} cancelled job(s)"] if cancelled else [])])
    how = "retry them with " + " and ".join(
        [*(["`jobworker retry --failed`"] if failed else []),
         *(["`jobworker retry --cancelled`"] if cancelled else [])])
    if stuck:
        return f"stuck: {blocked} job(s) blocked behind {behind}; {how}"
    return f"{behind} hold(s) up blocked jobs downstream; {how}"


def overview(board_id: int, now: float | None = None,
             status: dict[str, Any] | None = None) -> dict[str, Any]:
    """Progress, rates, ETA and health of one board (``status``: its
    queries.board_status(), if the caller read it already)."""
    now = time.time() if now is None else now
    status = queries.board_status(board_id) if status is None else status
    stage_rows = queries.stages(board_id)
    by_stage = status["by_stage"]
    counts = {s: c.get(JobState.ACTIVE.value, 0) for s, c in by_stage.items()}
    blocked_at = {s: c.get(JobState.BLOCKED.value, 0) for s, c in by_stage.items()}
    last = max([*(r.number for r in stage_rows), *by_stage, 0])
    names = {r.number: r.name for r in stage_rows}
    lifetimes = {r.number: r.lifetime for r in stage_rows}
    done = counts.get(last, 0) if last else 0
    running = sum(n for s, n in counts.items() if s % 2 == 1)
    waiting = sum(n for s, n in counts.items() if s % 2 == 0 and s != last)
    blocked = sum(blocked_at.values())
    live_total = status["total"] - status["cancelled"]
    remaining = max(live_total - done - status["failed"], 0)
    per_min = rate_per_minute(board_id, last, now, running)
    # the only jobs left wait for jobs that will never be done by themselves
    stuck = bool(blocked) and not running and not waiting
    held_by = (blockers(board_id, by_stage) if blocked and (status["failed"] or
                                                            status["cancelled"]) else {})
    news = _blocked_news(blocked, held_by, stuck)
    eta = (remaining / (per_min / 60.0) if per_min > 0 and remaining and not stuck
           else None)
    flagged = queries.flagged_jobs(board_id, limit=20)
    n_flagged = queries.count_flagged_fast(board_id)
    health, why = _health(live_total, remaining, status["failed"], running,
                          status["lost_workers"], n_flagged, per_min,
                          stuck=news if stuck else None, holding=None if stuck else news)
    return {
        "total": live_total, "done": done, "waiting": waiting, "running": running,
        "blocked": blocked, "failed": status["failed"], "cancelled": status["cancelled"],
        "progress": round(100.0 * done / live_total, 2) if live_total else 0.0,
        "per_minute": round(per_min, 1), "eta_seconds": None if eta is None else round(eta),
        # some blocked jobs wait for failed or cancelled ones: the ETA counts
        # them, so the run ends sooner (with them still blocked)
        "eta_at_most": eta is not None and any(held_by.values()),
        "stuck": stuck,
        "flagged": n_flagged, "flagged_jobs": flagged,
        "alive_workers": status["alive_workers"], "lost_workers": status["lost_workers"],
        "health": health, "health_reason": why, "last_stage": last,
        "stages": [{"stage": s, "name": names.get(s), "count": counts.get(s, 0),
                    "blocked": blocked_at.get(s, 0),
                    "failed": by_stage.get(s, {}).get(JobState.FAILED.value, 0),
                    "cancelled": by_stage.get(s, {}).get(JobState.CANCELLED.value, 0),
                    "lifetime": lifetimes.get(s, 0.0),
                    "kind": "done" if s == last else ("running" if s % 2 else "waiting")}
                   # the stages that exist, never a range up to a number a client sent
                   for s in sorted({0, *names, *by_stage})],
    }


def progress(board_id: int, status: dict[str, Any] | None = None) -> dict[str, Any]:
    """The API's view of overview(): the figures, without the tables."""
    o = overview(board_id, status=status)
    return {k: o[k] for k in ("total", "done", "waiting", "running", "blocked", "failed",
                              "cancelled", "per_minute", "eta_seconds", "progress", "health",
                              "health_reason", "flagged")}


def failure_groups(board_id: int, limit: int = 20, keys: int = 5,
                   scan: int = 100_000) -> dict[str, Any]:
    """The board's failed jobs grouped by the last line of their error,
    biggest groups first, with the first few keys of each (read from the
    failed jobs' partial index, at most ``scan`` of them)."""
    rows = db.session.execute(
        select(JOBS.c.key, JOBS.c.error)
        .where(JOBS.c.board_id == board_id,
               JOBS.c.state == literal(JobState.FAILED.value, literal_execute=True))
        .order_by(JOBS.c.entered_at).limit(scan)).all()
    end_read()
    groups: dict[str, dict[str, Any]] = {}
    for key, error in rows:
        lines = [ln.strip() for ln in (error or "").splitlines() if ln.strip()]
        text = lines[-1][:300] if lines else "(no error text)"
        g = groups.setdefault(text, {"error": text, "count": 0, "keys": []})
        g["count"] += 1
        if len(g["keys"]) < keys:
            g["keys"].append(key)
    ordered = sorted(groups.values(), key=lambda g: -g["count"])
    return {"total": len(rows), "groups": ordered[:limit], "more_groups": max(len(ordered) - limit, 0)}


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
    out = overview(board_id, now)
    out["throughput"] = throughput(board_id, now=now)
    out["workers"] = queries.list_workers(board_id)
    out["failed_jobs"] = failed_jobs(board_id)
    out["max_running"] = _limits(board_id)["max_running"]
    out["pools"] = pools.pools(board_id, now)
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
        out.append({"id": b.id, "name": b.name, "classic": b.jobix is not None, **o})
    return out


NOTE_KINDS = ("event", "log", "var")  # what a running job writes in its output (@event=[..])


def event_text(e: dict[str, Any]) -> str:
    """An event as the job page's history says it (static/history.js says
    the same of the events it receives live)."""
    return e["kind"] + (f" (stage {e['stage']})" if e["stage"] is not None else "")


def job_history(board_id: int, key: str) -> dict[str, Any] | None:
    """A job with its attempts and events merged into one timeline, its
    workers' notes apart, and its place in the workflow."""
    # the page follows the job's events from here on (taken first: an
    # event in both the page and the stream is shown once, by its cursor)
    follow_from = str(events.head(board_id))
    job = queries.job_detail(board_id, key)
    if job is None:
        return None
    job["follow_from"] = follow_from
    kept = job["events"]
    job["notes"] = [_note(e) for e in kept if e["kind"] in NOTE_KINDS]
    timeline = [{"at": e["at"], "what": event_text(e), "cursor": e["cursor"],
                 "who": (e["detail"] or {}).get("worker") if isinstance(e["detail"], dict)
                 else None} for e in kept if e["kind"] not in NOTE_KINDS]
    if job["events_total"] == len(kept) and not any(e["kind"] == "claimed" for e in kept):
        # a job of a database older than the event log's claims: its attempts
        timeline += [{"at": a["started_at"], "what": f"claimed at stage {a['stage']}",
                      "who": a["worker"]} for a in job["attempts_history"]]
        timeline += [{"at": a["ended_at"], "what": f"attempt {a['outcome']}",
                      "who": a["worker"]} for a in job["attempts_history"] if a["ended_at"]]
    job["timeline"] = sorted(timeline, key=lambda t: t["at"])
    limits = _limits(board_id)
    own = job.get("max_attempts")
    job["attempt_budget"] = own if own is not None else limits["max_attempts"]
    job["summary"] = _job_summary(job, job["attempt_budget"])
    job.setdefault("priority", 0)
    job.setdefault("after", [])
    job.setdefault("downstream", [])
    job.setdefault("downstream_total", len(job["downstream"]))
    job.setdefault("blocked_by", [])
    job["outputs"] = sorted(((int(s), t) for s, t in job["log_tails"].items()), reverse=True)
    job["resource_summary"] = pools.resource_summary(board_id, key)
    job["payload_text"] = _pretty(job["payload"])
    job["result_text"] = None if job["result"] is None else _pretty(job["result"])
    return job


def _note(event: dict[str, Any]) -> dict[str, Any]:
    """One of a job's notes as the page lists it: time, kind, name, text."""
    d = event["detail"] if isinstance(event["detail"], dict) else {}
    text = d.get("value") if event["kind"] == "var" else d.get("message")
    return {"at": event["at"], "kind": event["kind"], "stage": event["stage"],
            "name": d.get("name"), "text": "" if text is None else str(text)}


def _limits(board_id: int) -> dict[str, Any]:
    """The board's default attempt budget and its cap on running jobs."""
    row = db.session.execute(select(BOARDS.c.max_attempts, BOARDS.c.max_running)
                             .where(BOARDS.c.id == board_id)).first()
    end_read()
    if row is None:
        return {"max_attempts": 0, "max_running": None}
    return {"max_attempts": int(row.max_attempts or 0), "max_running": row.max_running}


BLOCKED_BY_SHOWN = 10  # keys named in a blocked job's summary line


def _job_summary(job: dict[str, Any], max_attempts: int) -> str:
    """One line under a job's name: its state, stage and attempt budget, in
    the words the history uses."""
    state, stage, used = job["state"], job["stage"], job["attempts"]
    if state == "running":
        return (f"running at stage {stage} (claimed from stage {stage - 1}) · attempt {used} "
                f"of {max_attempts} at that stage")
    if state == "waiting":
        return f"waiting at stage {stage} · {used} of {max_attempts} attempts used at this stage"
    if state == "blocked":
        keys = [str(k) for k in job.get("blocked_by") or []]
        named = ", ".join(keys[:BLOCKED_BY_SHOWN])
        more = f" and {len(keys) - BLOCKED_BY_SHOWN} more" if len(keys) > BLOCKED_BY_SHOWN else ""
        return (f"blocked at stage {stage} until {named}{more} "
                f"{'is' if len(keys) == 1 else 'are'} done" if keys
                else f"blocked at stage {stage}")
    if state == "failed":
        return f"failed at stage {stage} after {used} of {max_attempts} attempts at that stage"
    return f"{state} at stage {stage}"


def _pretty(value: Any) -> str:
    """Indented JSON; compact for a value nested too deeply for the
    indenting encoder (which recurses in Python)."""
    try:
        return json.dumps(value, indent=2)
    except RecursionError:
        return json.dumps(value)
