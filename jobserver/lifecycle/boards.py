"""Boards and their stage lifetimes (their tokens: tokens.py)."""
from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import re
import time
from typing import Any, Sequence

from flask import current_app
from sqlalchemy import Connection, bindparam, delete, select, update

from .. import live, wakeup
from ..dialect import insert_ignore, write_transaction
from ..limits import MAX_STAGE
from .common import (BOARDS, MEMBERS, STAGES, TOKENS, BoardRef, Conflict, LifecycleError,
                     _check_stages, _dialect, _engine)

log = logging.getLogger(__name__)


_BOARD_REF = select(BOARDS.c.id, BOARDS.c.name, BOARDS.c.jobix)


def _ref_of(row: Any) -> BoardRef:
    return BoardRef(row.id, row.name, row.jobix)


def classic_board_name(jobix: int, secret: bytes | None = None) -> str:
    """A board name for a classic jobix that does not reveal the jobix: a
    keyed hash (the server's NAME_SECRET), so that nobody can derive the
    jobix of a name shown on the home page by trying small numbers."""
    key = current_app.config["NAME_SECRET"] if secret is None else secret
    digest = hmac.new(key, str(jobix).encode(), hashlib.sha256).hexdigest()[:10]
    return f"board-{digest}"


def _unkeyed_name(jobix: int) -> str:
    """The name earlier versions gave: a plain hash of the jobix (guessable)."""
    return f"board-{hashlib.sha256(str(jobix).encode()).hexdigest()[:10]}"


def rename_guessable_boards() -> int:
    """Give classic boards still named the old, guessable way their keyed
    name (once, at start; classic boards are few)."""
    with _engine().connect() as conn:
        rows = conn.execute(select(BOARDS.c.id, BOARDS.c.name, BOARDS.c.jobix)
                            .where(BOARDS.c.jobix.is_not(None))).all()
    old = [r for r in rows if r.name == _unkeyed_name(r.jobix)]
    if old:
        with write_transaction(_engine()) as conn:
            conn.execute(update(BOARDS).where(BOARDS.c.id == bindparam("b"))
                         .values(name=bindparam("new_name")),
                         [{"b": r.id, "new_name": classic_board_name(r.jobix)} for r in old])
        log.info("renamed %d classic board(s) to keyed names", len(old))
    return len(old)


BOARD_TTL = 1.0  # seconds a jobix's board is remembered (a board deleted
                 # by another process is seen within this)


def _board_cache() -> dict[int, tuple[float, BoardRef]]:
    # bounded by the number of boards (cleared past 10,000), not by traffic
    cache = current_app.extensions.setdefault("jobserver_boards", {})
    if len(cache) > 10_000:
        cache.clear()
    return cache


def find_board(jobix: int) -> BoardRef | None:
    cache = _board_cache()
    now = time.monotonic()
    hit = cache.get(jobix)
    if hit is not None and hit[0] > now:
        return hit[1]
    with _engine().connect() as conn:
        row = conn.execute(_BOARD_REF.where(BOARDS.c.jobix == jobix)).first()
    if row is None:
        cache.pop(jobix, None)
        return None
    ref = _ref_of(row)
    cache[jobix] = (now + BOARD_TTL, ref)
    return ref


def ensure_board(jobix: int) -> BoardRef:
    """The board of a classic jobix, created on first use."""
    found = find_board(jobix)
    if found:
        return found
    with write_transaction(_engine()) as conn:
        conn.execute(insert_ignore(BOARDS, ["jobix"], _dialect()).values(
            name=classic_board_name(jobix), jobix=jobix, created_at=time.time(),
            auto_requeue=True, max_attempts=3))
    log.info("created board %s", classic_board_name(jobix))
    found = find_board(jobix)
    assert found is not None
    return found


_MAX_RUNNING = select(BOARDS.c.max_running).where(BOARDS.c.id == bindparam("b"))

CAP_TTL = 1.0  # seconds a server process may go on claiming without a cap
               # another process has just set (its own settings apply at once)


def is_capped(conn: Connection, board_id: int) -> bool:
    """Whether the board has a max_running, remembered for CAP_TTL seconds
    per process (a bounded map): most boards have none, and their claims
    then skip reading it."""
    cache: dict[int, tuple[float, bool]] = current_app.extensions.setdefault(
        "jobserver_caps", {})
    now = time.monotonic()
    hit = cache.get(board_id)
    if hit is not None and hit[0] > now:
        return hit[1]
    changes = current_app.extensions.get("jobserver_cap_changes", 0)
    capped = conn.execute(_MAX_RUNNING, {"b": board_id}).scalar() is not None
    if current_app.extensions.get("jobserver_cap_changes", 0) == changes:
        # (not if a cap was set here meanwhile: what was read may predate it)
        if len(cache) >= 10_000:
            cache.clear()
        cache[board_id] = (now + CAP_TTL, capped)
    return capped


def _forget_cap(board_id: int) -> None:
    """The board's max_running changed: read it afresh at the next claim."""
    current_app.extensions["jobserver_cap_changes"] = (
        current_app.extensions.get("jobserver_cap_changes", 0) + 1)
    current_app.extensions.get("jobserver_caps", {}).pop(board_id, None)


UNCHANGED: Any = object()  # a setting left as it is (None is a value: "no cap")


def set_board_options(board_id: int, auto_requeue: bool | None = None,
                      max_attempts: int | None = None,
                      max_running: int | None = UNCHANGED) -> None:
    """Change a board's settings; ``max_running`` None lifts the cap."""
    values: dict[str, Any] = {}
    if max_running is not UNCHANGED:
        if max_running is not None and max_running < 0:
            raise LifecycleError("max_running must be 0 or more (or none: no cap)")
        values["max_running"] = max_running
    if auto_requeue is not None:
        values["auto_requeue"] = auto_requeue
    if max_attempts is not None:
        if max_attempts < 1:
            raise LifecycleError("max_attempts must be at least 1")
        values["max_attempts"] = max_attempts
    if values:
        with write_transaction(_engine()) as conn:
            conn.execute(update(BOARDS).where(BOARDS.c.id == board_id).values(**values))
        _forget_cap(board_id)
        live.mark_dirty(board_id)
        wakeup.work_arrived(board_id)


# ----------------------------------------------------------------- lifetimes

def _check_minutes(minutes: Sequence[float]) -> None:
    if not minutes:
        raise LifecycleError("give at least one lifetime, e.g. /init/0/60/0")
    if len(minutes) > MAX_STAGE + 1:
        raise LifecycleError(f"at most {MAX_STAGE + 1} stages")
    for m in minutes:
        if not (0 <= m < float("inf")):
            raise LifecycleError(f"lifetimes are minutes >= 0, got {m!r}")


def _lifetimes(conn: Connection, board_id: int) -> dict[int, float]:
    rows = conn.execute(select(STAGES.c.number, STAGES.c.lifetime)
                        .where(STAGES.c.board_id == board_id).order_by(STAGES.c.number)).all()
    return {r.number: r.lifetime for r in rows}


def lifetimes(board_id: int) -> dict[int, float]:
    with _engine().connect() as conn:
        return _lifetimes(conn, board_id)


def set_lifetimes_if_unset(board_id: int, minutes: Sequence[float]) -> dict[int, float]:
    """Give stages 0..n their lifetimes unless the board already has some."""
    _check_minutes(minutes)
    with write_transaction(_engine()) as conn:
        if not _lifetimes(conn, board_id):
            if len(minutes) % 2 == 0:
                raise LifecycleError(
                    f"{len(minutes)} lifetimes end on stage {len(minutes) - 1}, a running (odd) "
                    "stage, where no job could ever finish: give an odd number, e.g. "
                    "/init/0/30/0")
            conn.execute(STAGES.insert(), [
                {"board_id": board_id, "number": i, "lifetime": float(m)}
                for i, m in enumerate(minutes)])
        result = _lifetimes(conn, board_id)
    live.mark_dirty(board_id)
    return result


def _set_stage(conn: Connection, board_id: int, stage: int, **values: Any) -> None:
    """Change one stage's settings, declaring the stage if the board lacks
    it (with no lifetime and no name unless given)."""
    changed = conn.execute(update(STAGES).where(STAGES.c.board_id == board_id,
                                                STAGES.c.number == stage)
                           .values(**values)).rowcount
    if not changed:
        conn.execute(STAGES.insert().values(
            {"board_id": board_id, "number": stage, "lifetime": 0.0, **values}))


def set_lifetime(board_id: int, stage: int, minutes: float) -> dict[int, float]:
    """Set the lifetime of one of the board's stages (or add one to a board
    without declared stages): a board's last stage stays where it was
    checked to be, so its done jobs stay done."""
    _check_minutes([minutes])
    _check_stages(None, board_id, stage)
    with write_transaction(_engine()) as conn:
        _check_stages(conn, board_id, stage)
        _set_stage(conn, board_id, stage, lifetime=float(minutes))
        result = _lifetimes(conn, board_id)
    live.mark_dirty(board_id)
    return result


# ------------------------------------------------------------ API boards

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
CLASSIC_NAME_RE = re.compile(r"^board-[0-9a-f]{10}$")  # see classic_board_name


def board_by_name(name: str) -> BoardRef | None:
    if "\x00" in name:  # no board has one (and PostgreSQL refuses to compare it)
        return None
    with _engine().connect() as conn:
        row = conn.execute(_BOARD_REF.where(BOARDS.c.name == name)).first()
    return _ref_of(row) if row else None


def create_board(name: str, lifetimes_min: Sequence[float] | None = None,
                 stage_names: Sequence[str] | None = None, max_attempts: int = 3,
                 auto_requeue: bool = True, max_running: int | None = None) -> BoardRef:
    """A new API board with its stages.  Raises Conflict if the name exists."""
    if not NAME_RE.match(name or ""):
        raise LifecycleError("a board name is 1-100 letters, digits, '.', '_' or '-', "
                             "starting with a letter or digit")
    if CLASSIC_NAME_RE.match(name):
        raise LifecycleError("names like board-<10 hex digits> belong to classic job lists: "
                             "choose another")
    if max_attempts < 1:
        raise LifecycleError("max_attempts must be at least 1")
    if max_running is not None and max_running < 0:
        raise LifecycleError("max_running must be 0 or more (or none: no cap)")
    lts, names = _stages_of(list(lifetimes_min or []), list(stage_names or []))
    n_stages = len(lts)
    with write_transaction(_engine()) as conn:
        if conn.execute(select(BOARDS.c.id).where(BOARDS.c.name == name)).first():
            raise Conflict(f"a board named {name!r} exists already")
        board_id = conn.execute(BOARDS.insert().values(
            name=name, jobix=None, created_at=time.time(), auto_requeue=auto_requeue,
            max_attempts=max_attempts, max_running=max_running).returning(BOARDS.c.id)
        ).scalar_one()
        if n_stages:  # always: _stages_of gives at least three
            conn.execute(STAGES.insert(), [
                {"board_id": board_id, "number": i,
                 "lifetime": float(lts[i]) if i < len(lts) else 0.0,
                 "name": names[i] if i < len(names) else None}
                for i in range(n_stages)])
    log.info("created board %s", name)
    return BoardRef(board_id, name, None)


DEFAULT_RUNNING_LIFETIME = 30.0  # minutes a running stage gets when none is given


def _stages_of(lts: list[float], names: list[str]) -> tuple[list[float], list[str]]:
    """Check a new board's stages and fill in the defaults: no lifetimes
    means waiting, running (30 minutes since the last heartbeat), done; the
    stages must end on an even (resting) stage, or no job could ever be done."""
    if lts:
        _check_minutes(lts)
    if names and lts and len(names) != len(lts):
        raise LifecycleError(f"{len(names)} stage names for {len(lts)} lifetimes: "
                             "give one name per stage")
    n = max(len(lts), len(names)) or 3
    if n % 2 == 0:
        raise LifecycleError(
            f"{n} stages end on stage {n - 1}, a running (odd) stage, where no job could "
            "ever finish: give an odd number of stages, e.g. lifetimes 0/30/0 "
            "(waiting, running for at most 30 minutes, done)")
    if not lts:
        lts = [DEFAULT_RUNNING_LIFETIME if i % 2 else 0.0 for i in range(n)]
    return lts, names


DELETE_CHUNK = 5000  # jobs (with their attempts and events) per transaction


def delete_board(board_id: int) -> int:
    """Delete a board with everything it holds.  Returns its number of jobs.

    Jobs go in chunks of DELETE_CHUNK, one transaction each with their
    counters, yielding between chunks, so that a million-job board does not
    hold the database (or an eventlet hub) for seconds; a delete cut short
    leaves a smaller, consistent board, and deleting again finishes it."""
    from ..extensions import socketio
    from .common import ALLOCATIONS, ATTEMPTS, DEPS, EVENTS, JOBS, SAMPLES, WORKERS
    from .counters import COUNTS, THROUGHPUT, Tally
    from . import logs

    deleted = 0
    chunk = (select(JOBS.c.id).where(JOBS.c.board_id == board_id).order_by(JOBS.c.id)
             .limit(DELETE_CHUNK))
    while True:
        with write_transaction(_engine()) as conn:
            ids = conn.execute(chunk).scalars().all()
            if not ids:
                break
            # children first: the same on SQLite and PostgreSQL, with or
            # without the foreign keys' ON DELETE CASCADE being enforced
            conn.execute(delete(SAMPLES).where(SAMPLES.c.attempt_id.in_(
                select(ATTEMPTS.c.id).where(ATTEMPTS.c.job_id.in_(ids)))))
            conn.execute(delete(ATTEMPTS).where(ATTEMPTS.c.job_id.in_(ids)))
            logs.delete_jobs_logs(conn, ids)  # after their attempts (see logs.py)
            conn.execute(delete(EVENTS).where(EVENTS.c.job_id.in_(ids)))
            conn.execute(delete(DEPS).where(DEPS.c.job_id.in_(ids)))
            conn.execute(delete(DEPS).where(DEPS.c.upstream_id.in_(ids)))
            gone = conn.execute(delete(JOBS).where(JOBS.c.id.in_(ids))
                                .returning(JOBS.c.stage, JOBS.c.state)).all()
            tally = Tally()
            for (stage, state), n in collections.Counter(map(tuple, gone)).items():
                tally.move(board_id, n, (stage, state), None)
            tally.apply(conn, time.time())
            deleted += len(gone)
        socketio.sleep(0)
    with write_transaction(_engine()) as conn:
        for table in (ATTEMPTS, EVENTS, WORKERS, TOKENS, MEMBERS, STAGES, COUNTS, THROUGHPUT,
                      ALLOCATIONS, logs.CHUNKS, logs.ATTEMPT_LOGS, logs.BOARD_LOGS):
            conn.execute(delete(table).where(table.c.board_id == board_id))
        conn.execute(delete(BOARDS).where(BOARDS.c.id == board_id))
    current_app.extensions.get("jobserver_boards", {}).clear()
    current_app.extensions.get("jobserver_tokens", {}).clear()
    current_app.extensions.get("jobserver_members", {}).clear()
    _forget_cap(board_id)
    live.mark_dirty(board_id)
    log.info("deleted board %d (%d jobs)", board_id, deleted)
    return deleted


def board_settings(board_id: int) -> dict[str, Any]:
    with _engine().connect() as conn:
        row = conn.execute(select(BOARDS.c.auto_requeue, BOARDS.c.max_attempts,
                                  BOARDS.c.max_running)
                           .where(BOARDS.c.id == board_id)).one()
        stages = conn.execute(select(STAGES.c.number, STAGES.c.lifetime, STAGES.c.name)
                              .where(STAGES.c.board_id == board_id)
                              .order_by(STAGES.c.number)).all()
    return {"auto_requeue": bool(row.auto_requeue), "max_attempts": row.max_attempts,
            "max_running": row.max_running,
            "stages": [{"stage": s.number, "lifetime": s.lifetime, "name": s.name}
                       for s in stages]}


def set_stage_name(board_id: int, stage: int, name: str | None) -> None:
    _check_stages(None, board_id, stage)
    with write_transaction(_engine()) as conn:
        _check_stages(conn, board_id, stage)
        _set_stage(conn, board_id, stage, name=name)
    live.mark_dirty(board_id)
