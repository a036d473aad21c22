"""What the read commands print (`status`, `job`, `workers`, `watch`): pure
functions from the API's answers to lines a person reads (plain ASCII of
our own: a node's terminal may not speak UTF-8)."""
from __future__ import annotations

import csv
import io
import json
import time
from typing import Any, Sequence

from .terminal import age, duration

FAILURE_GROUPS = 10  # distinct errors listed by status
KEYS_SHOWN = 3  # keys named per distinct error


def last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1].strip()[:200] if lines else "(no error text)"


def failure_lines(failures: dict[str, Any], limit: int = FAILURE_GROUPS) -> list[str]:
    """One line per distinct error: its count and its first keys."""
    groups = failures.get("groups") or []
    if not groups:
        return []
    total = failures.get("total", sum(g["count"] for g in groups))
    distinct = len(groups) + (failures.get("more_groups") or 0)
    out = [f"{total} failed job{'' if total == 1 else 's'}, {distinct} distinct "
           f"error{'' if distinct == 1 else 's'}:"]
    shown = groups[:limit]
    width = len(str(max(g["count"] for g in shown)))
    for g in shown:
        keys = list(g.get("keys") or [])[:KEYS_SHOWN]
        more = ", ..." if g["count"] > len(keys) else ""
        out.append(f"  {g['count']:>{width}} x {g['error'] or '(no error text)'}"
                   f"   [{', '.join(keys)}{more}]")
    if distinct > len(shown):
        rest = total - sum(g["count"] for g in shown)
        out.append(f"  ... and {distinct - len(shown)} more distinct errors ({rest} jobs)")
    return out


def counts_text(p: dict[str, Any]) -> str:
    parts = [f"{p.get('done', 0)} done", f"{p.get('waiting', 0)} waiting",
             f"{p.get('running', 0)} running"]
    if p.get("blocked"):
        parts.append(f"{p['blocked']} blocked")
    parts += [f"{p.get('failed', 0)} failed", f"{p.get('cancelled', 0)} cancelled"]
    return ", ".join(parts)


def rate_text(p: dict[str, Any]) -> str:
    rate = p.get("per_minute")
    eta = p.get("eta_seconds")
    left = p.get("waiting", 0) + p.get("running", 0)
    return (f"{'?' if rate is None else format(rate, '.0f')}/min, "
            + ("nothing left to run" if not left else
               f"ETA {'?' if eta is None else duration(eta)}"))


def health_text(p: dict[str, Any]) -> str:
    if not p.get("health"):
        return ""
    return p["health"] + (f": {p['health_reason']}" if p.get("health_reason") else "")


def status_lines(board: str, s: dict[str, Any], failures: dict[str, Any] | None,
                 workers: Sequence[dict[str, Any]], now: float | None = None) -> list[str]:
    p = s["progress"]
    health = health_text(p)
    out = [f"board {board}: {s.get('total', 0)} jobs: {counts_text(p)}"
           f" ({p.get('progress', 0):.0f}% finished, {rate_text(p)})",
           *([f"health {health}"] if health else [])]
    names = {st["stage"]: st.get("name") for st in s.get("stages") or []}
    for stage, n in sorted((int(k), v) for k, v in (s.get("counts") or {}).items()):
        label = f" ({names[stage]})" if names.get(stage) else ""
        out.append(f"  stage {stage}{label}: {n}")
    alive = [w for w in workers if w.get("state") == "alive"]
    lost = [w for w in workers if w.get("state") == "lost"]
    seen = max((w.get("last_seen") or 0 for w in alive), default=None)
    out.append(f"workers: {s.get('alive_workers', len(alive))} alive"
               + (f" (last heartbeat {age(seen, now)})" if seen else "")
               + f", {s.get('lost_workers', len(lost))} lost")
    if failures:
        out += failure_lines(failures)
    if lost:
        out.append("lost workers:")
        for w in lost[:20]:
            res = w.get("resources") or {}
            out.append(f"  {w['name']} on {w.get('host') or '?'}, last seen "
                       f"{age(w.get('last_seen'), now)}, last cpu "
                       f"{res.get('cpu_percent', '?')}%")
        if len(lost) > 20:
            out.append(f"  ... and {len(lost) - 20} more")
    return out


def job_log(job: dict[str, Any]) -> tuple[str | None, str]:
    """The freshest log of a job and where it comes from."""
    for a in reversed(job.get("attempts_history") or []):
        if a.get("log"):
            running = " (running)" if a.get("ended_at") is None else ""
            return a["log"], f"stage {a['stage']}, attempt id {a['attempt_id']}{running}"
    tails = job.get("log_tails") or {}
    if tails:
        stage = max(tails, key=lambda k: int(k))
        return tails[stage], f"stage {stage}"
    return job.get("log_tail"), "last attempt"


def job_lines(job: dict[str, Any], lines: int = 30, now: float | None = None) -> list[str]:
    history = job.get("attempts_history") or []
    out = [f"job {job['key']}: {job.get('state')} at stage {job.get('stage')}"
           + (" (overstaying its lifetime)" if job.get("flagged") else ""),
           f"  entered     {age(job.get('entered_at'), now)}"]
    per_stage = job.get("attempts_per_stage")
    attempts = f"  attempts    {job.get('attempts', 0)} at this stage"
    if per_stage:
        attempts += "; " + "; ".join(
            f"stage {a['stage']}: {a.get('claims', 0)} claimed, {a.get('failures', 0)} "
            f"failed, {a.get('lost', 0)} lost" for a in per_stage)
    out.append(attempts)
    out += workflow_lines(job)
    if history:
        a = history[-1]
        when = (f"ended {age(a['ended_at'], now)} ({a.get('outcome')})" if a.get("ended_at")
                else f"started {age(a.get('started_at'), now)}, still running")
        where = a.get("host") or "?"
        if a.get("allocation"):
            where += f", allocation {a['allocation']}"
        out.append(f"  last try    stage {a['stage']} on {a.get('worker') or '?'} "
                   f"({where}), {when}")
    if job.get("error"):
        label = "error      " if job.get("state") == "failed" else "last error "
        out.append(f"  {label} {last_line(job['error'])}")
    out.append(f"  payload     {_compact(job.get('payload'))}")
    if job.get("result") is not None:
        out.append(f"  result      {_compact(job['result'])}")
    if job.get("filename"):
        out.append(f"  file        {job['filename']}")
    out += note_lines(job)
    text, where = job_log(job)
    if text:
        kept = text.rstrip("\n").splitlines()
        shown = kept if lines <= 0 else kept[-lines:]
        cut = f", last {len(shown)} of {len(kept)} lines" if len(shown) < len(kept) else ""
        out.append(f"  log tail ({where}{cut}):")
        out += ["    " + line for line in shown]
    else:
        out.append("  log tail    (none yet)")
    return out


RELATED_SHOWN = 10  # upstream or downstream jobs named by `jobworker job`
NOTES_SHOWN = 10  # a job's last notes shown by `jobworker job`


def _related(items: Sequence[dict[str, Any]], total: int | None = None) -> str:
    shown = ", ".join(f"{i['key']} ({i.get('state', '?')})" for i in items[:RELATED_SHOWN])
    more = (total if total is not None else len(items)) - min(len(items), RELATED_SHOWN)
    return shown + (f" and {more} more" if more > 0 else "")


def workflow_lines(job: dict[str, Any]) -> list[str]:
    """A job's priority and its place in a workflow (servers without
    workflows send none of it)."""
    out = []
    if job.get("priority"):
        out.append(f"  priority    {job['priority']}")
    if job.get("max_attempts") is not None:
        out.append(f"  max tries   {job['max_attempts']} at each stage (this job's own)")
    if job.get("after"):
        out.append(f"  runs after  {_related(job['after'], job.get('after_total'))}")
    if job.get("blocked_by"):
        keys = job["blocked_by"]
        out.append(f"  blocked by  {', '.join(map(str, keys[:RELATED_SHOWN]))}"
                   + (f" and {len(keys) - RELATED_SHOWN} more" if len(keys) > RELATED_SHOWN
                      else ""))
    if job.get("downstream"):
        out.append(f"  runs before {_related(job['downstream'], job.get('downstream_total'))}")
    return out


def note_lines(job: dict[str, Any], limit: int = NOTES_SHOWN) -> list[str]:
    """The last notes the job wrote (@event, @log, @var lines)."""
    notes = [e for e in job.get("events") or () if e.get("kind") in ("event", "log", "var")]
    if not notes:
        return []
    shown = notes[-limit:]
    out = [f"  notes{'' if len(shown) == len(notes) else f' (last {len(shown)} of {len(notes)})'}:"]
    for e in shown:
        d = e.get("detail") if isinstance(e.get("detail"), dict) else {}
        if e["kind"] == "event":
            text = f"event {d.get('name')}: {d.get('message', '')}"
        elif e["kind"] == "var":
            text = f"var   {d.get('name')} = {d.get('value', '')}"
        else:
            text = f"log   {d.get('message', '')}"
        out.append("    " + text[:300])
    return out


def _compact(value: Any, width: int = 200) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= width else text[:width - 3] + "..."


def worker_lines(workers: Sequence[dict[str, Any]], now: float | None = None) -> list[str]:
    if not workers:
        return ["no workers yet"]
    allocations = any(w.get("allocation") for w in workers)  # workers in batch jobs
    rows = [("NAME", "HOST", *(("ALLOCATION",) if allocations else ()), "STATE", "JOBS", "CPU",
             "MEM", "LAST SEEN")]
    for w in workers:
        res = w.get("resources") or {}
        cpu, mem = res.get("cpu_percent"), res.get("memory_used_percent")
        rows.append((w["name"], w.get("host") or "?",
                     *((w.get("allocation") or "-",) if allocations else ()),
                     w.get("state") or "?", str(w.get("running", 0)),
                     "?" if cpu is None else f"{cpu:.0f}%",
                     "?" if mem is None else f"{mem:.0f}%",
                     age(w.get("last_seen"), now)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]


def bar(percent: float, width: int = 30) -> str:
    """A text progress bar.  Written here, not taken from click or tqdm:
    their bars own the terminal's last line, and `watch` redraws a block of
    several lines (counts, rate, failures) under it."""
    filled = int(round(width * max(0.0, min(100.0, percent)) / 100))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def watch_frame(board: str, p: dict[str, Any], failures: dict[str, Any] | None,
                note: str = "") -> list[str]:
    """The block `watch` redraws on a terminal."""
    health = health_text(p)
    out = [f"board {board}  {bar(p.get('progress') or 0)} {p.get('progress') or 0:5.1f}%"
           + (f"  {health}" if health else ""),
           f"  {counts_text(p)}  (of {p.get('total', 0)})",
           f"  {rate_text(p)}" + (f"   {note}" if note else "")]
    if failures and failures.get("groups"):
        out += ["  " + line for line in failure_lines(failures, limit=5)]
    return out


def watch_line(board: str, p: dict[str, Any], when: float | None = None) -> str:
    """One line per refresh when the output is not a terminal."""
    stamp = time.strftime("%H:%M:%S", time.localtime(when))
    return (f"{stamp} {board} {p.get('progress') or 0:.0f}%: {counts_text(p)}; "
            f"{rate_text(p)}")


RESOURCE_COLUMNS = ("attempt_id", "stage", "at", "host", "allocation", "cpu_percent",
                    "rss_bytes", "runtime_s")


def resource_csv(samples: Sequence[dict[str, Any]]) -> str:
    """A job's resource samples as CSV (the columns of the job page's
    download)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RESOURCE_COLUMNS)
    for s in samples:
        writer.writerow(["" if s.get(c) is None else s[c] for c in RESOURCE_COLUMNS])
    return out.getvalue()


def megabytes(n: int | None) -> str:
    return "?" if n is None else f"{n / (1 << 20):.1f} MB"


def resource_lines(key: str, samples: Sequence[dict[str, Any]]) -> list[str]:
    """`jobworker resources KEY`: one row per sample, oldest first."""
    if not samples:
        return [f"job {key}: no resource samples (they come with the heartbeats of a "
                f"running job)"]
    rows = [("TIME", "ATTEMPT", "STAGE", "HOST", "ALLOCATION", "CPU", "RSS", "RUN TIME")]
    for s in samples:
        cpu = s.get("cpu_percent")
        rows.append((time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s["at"])),
                     str(s.get("attempt_id", "?")), str(s.get("stage", "?")),
                     s.get("host") or "?", s.get("allocation") or "-",
                     "?" if cpu is None else f"{cpu:.0f}%", megabytes(s.get("rss_bytes")),
                     "?" if s.get("runtime_s") is None else f"{s['runtime_s']:.0f} s"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    attempts = len({s.get("attempt_id") for s in samples})
    return ([f"job {key}: {len(samples)} sample{'' if len(samples) == 1 else 's'} of "
             f"{attempts} attempt{'' if attempts == 1 else 's'}"]
            + ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows])
