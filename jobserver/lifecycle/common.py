"""Shared pieces of the lifecycle: tables, errors, value types, helpers."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple, Sequence

from sqlalchemy import Connection, bindparam, func, or_, select, update

from ..dialect import Hot
from ..extensions import db
from ..limits import MAX_STAGE
from ..models import (Allocation, ApiKey, Attempt, Board, Dependency, Event, EventKind, Job,
                      JobState, Member, Sample, Stage, Token, User, Worker)

JOBS = Job.__table__
ATTEMPTS = Attempt.__table__
EVENTS = Event.__table__
STAGES = Stage.__table__
BOARDS = Board.__table__
WORKERS = Worker.__table__
TOKENS = Token.__table__
DEPS = Dependency.__table__
ALLOCATIONS = Allocation.__table__
SAMPLES = Sample.__table__
USERS = User.__table__
API_KEYS = ApiKey.__table__
MEMBERS = Member.__table__

ACTIVE = JobState.ACTIVE.value


class LifecycleError(ValueError):
    """A request that cannot be carried out; the message says why."""


class UnknownStage(LifecycleError):
    """A stage outside the board's declared stages."""


class NotFound(LifecycleError):
    """No such job (or board, or token) in this board."""


class Conflict(LifecycleError):
    """The request names something that is no longer so: a stale attempt,
    an existing board name.  ``details`` says which."""

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class BoardRef:
    id: int
    name: str
    jobix: int | None


class NewJob(NamedTuple):
    """A job to push (a tuple: a million of them are built per big push)."""
    key: str
    payload: str  # JSON text
    stage: int


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    key: str
    payload: str
    stage: int  # the stage it was claimed from
    attempt_id: int
    attempt: int = 1  # how many times the job has been claimed, this one included


@dataclass(frozen=True)
class SweepResult:
    flagged: int
    requeued: int
    failed: int



_LAST_STAGE = select(func.max(STAGES.c.number)).where(STAGES.c.board_id == bindparam("b"))

# True when stage :top exists on board :b (any stage does on a board without
# declared stages).  Folded into the hot statements so that a claim or an
# update needs no separate check; when they change nothing, _check_stages
# tells an unknown stage from "no job".
_LAST = Hot(_LAST_STAGE)  # the same, run directly (every empty claim asks it)
_STAGE_OK = or_(_LAST_STAGE.scalar_subquery().is_(None),
                bindparam("top") <= _LAST_STAGE.scalar_subquery())
_NEW_EVENT = EVENTS.insert()
# one job's event (claims, reports): the hot form of _NEW_EVENT
_JOB_EVENT = Hot(EVENTS.insert().values(
    {c: bindparam(c) for c in ("board_id", "job_id", "kind", "at", "stage", "detail")}))

_CLOSE_ATTEMPT = (
    update(ATTEMPTS)
    .where(ATTEMPTS.c.job_id == bindparam("job"), ATTEMPTS.c.ended_at.is_(None))
    .values(ended_at=bindparam("now"), outcome=bindparam("result"))
)

LOOKUP_CHUNK = 500  # values per IN (...) list


def chunked(items: Sequence[Any], n: int = LOOKUP_CHUNK) -> Iterable[list[Any]]:
    """``items`` in lists of at most ``n`` (IN lists of a bounded size)."""
    for i in range(0, len(items), n):
        yield list(items[i:i + n])


def _event(board_id: int, kind: EventKind, now: float, job_id: int | None = None,
           stage: int | None = None, count: int = 1, detail: Any = None) -> dict[str, Any]:
    return {
        "board_id": board_id, "job_id": job_id, "kind": kind.value, "at": now,
        "stage": stage, "count": count,
        "detail": None if detail is None else json.dumps(detail),
    }


def _engine():
    return db.engine


def _dialect() -> str:
    return db.engine.dialect.name


def _check_stages(conn: Connection | None, board_id: int, *stages: int) -> int | None:
    """Refuse stages the board does not have.  A board with lifetimes set by
    /init has stages 0..n; a board without any accepts every stage >= 0.
    Returns the board's last stage (None without declared stages or conn)."""
    for s in stages:
        if s < 0:
            raise UnknownStage(f"stage must be a non-negative integer, got {s}")
        if s > MAX_STAGE:  # no board has it: stage numbers end there
            raise UnknownStage(f"unknown stage {s if s < 10**30 else '(a larger number)'}: "
                               f"stage numbers go up to {MAX_STAGE}")
    if conn is None:
        return None
    row = _LAST.first(conn, {"b": board_id})
    last = None if row is None else row[0]
    if last is not None:
        for s in stages:
            if s > last:
                raise UnknownStage(f"unknown stage {s}: this board has stages 0..{last}")
    return last
