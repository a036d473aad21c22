"""The tables: boards, their stages, jobs, attempts and events; accounts
(users, their API keys, board members).

Times are seconds since the epoch (float): portable between SQLite and
PostgreSQL and cheap to compare with lifetimes.  Job payloads are JSON text.
"""
from __future__ import annotations

import enum
from typing import Optional

from sqlalchemy import (BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint,
                        text)
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import db


class JobState(str, enum.Enum):
    """What the ``state`` column stores.  ACTIVE jobs are waiting, running or
    done depending on their stage; people see a Status instead."""

    ACTIVE = "active"
    BLOCKED = "blocked"  # waits for upstream jobs (see Dependency); never claimed
    FAILED = "failed"
    CANCELLED = "cancelled"


class Status(str, enum.Enum):
    """The one vocabulary of the API and the pages (see queries.status_of)."""

    WAITING = "waiting"  # at an even stage below the last one
    BLOCKED = "blocked"  # waiting for upstream jobs to be done
    RUNNING = "running"  # at an odd stage: a worker holds it
    DONE = "done"  # at the board's last stage
    FAILED = "failed"  # out of attempts at a stage (it stays at that stage)
    CANCELLED = "cancelled"


class Outcome(str, enum.Enum):
    RUNNING = "running"
    ADVANCED = "advanced"
    RELEASED = "released"
    LOST = "lost"
    FAILED = "failed"
    CANCELLED = "cancelled"


class EventKind(str, enum.Enum):
    """What the event log holds (lifecycle/events.py reads it)."""

    PUSHED = "pushed"
    CLAIMED = "claimed"  # an attempt started
    ADVANCED = "advanced"
    DONE = "done"  # reached the board's last stage
    FLAGGED = "flagged"
    REQUEUED = "requeued"
    FAILED = "failed"
    RELEASED = "released"
    CANCELLED = "cancelled"
    RETRIED = "retried"  # a failed or cancelled job put back by a person
    BLOCKED = "blocked"  # waits for upstream jobs again
    UNBLOCKED = "unblocked"  # its upstream jobs are done: claimable
    WORKER_ALIVE = "worker-alive"  # first seen, or back after being lost
    WORKER_LOST = "worker-lost"
    WORKER_STOPPED = "worker-stopped"
    # notes a running job wrote in its output (@event=[..], @log=[..], @var=[..])
    NOTE_EVENT = "event"
    NOTE_LOG = "log"
    NOTE_VAR = "var"


class WorkerState(str, enum.Enum):
    ALIVE = "alive"
    LOST = "lost"
    STOPPED = "stopped"


class Board(db.Model):
    __tablename__ = "boards"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    jobix: Mapped[Optional[int]] = mapped_column(BigInteger, unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    auto_requeue: Mapped[bool] = mapped_column(default=True)
    max_attempts: Mapped[int] = mapped_column(default=3)
    # at most this many of the board's jobs at odd stages at once (None: no cap)
    max_running: Mapped[Optional[int]] = mapped_column()
    # the newest event cursor the retention removed (older cursors: 410)
    events_pruned_tx: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    events_pruned_id: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


class Stage(db.Model):
    __tablename__ = "stages"

    board_id: Mapped[int] = mapped_column(ForeignKey("boards.id", ondelete="CASCADE"), primary_key=True)
    number: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    lifetime: Mapped[float] = mapped_column(Float, default=0.0)  # minutes, 0 = forever
    name: Mapped[Optional[str]] = mapped_column(String(200))


class Job(db.Model):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("board_id", "key", name="uq_jobs_board_key"),
        # One board's jobs in id order (the job table): never updated, as a
        # job's board and id never change.
        Index("ix_jobs_board", "board_id", "id"),
        # The few flagged jobs, found without scanning a board.
        Index("ix_jobs_flagged", "board_id", sqlite_where=text("flagged = 1"),
              postgresql_where=text("flagged")),
        # The failed jobs of a board, newest first, likewise.
        Index("ix_jobs_failed", "board_id", "entered_at", sqlite_where=text("state = 'failed'"),
              postgresql_where=text("state = 'failed'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    board_id: Mapped[int] = mapped_column(ForeignKey("boards.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[str] = mapped_column(Text, default="null")
    stage: Mapped[int] = mapped_column(default=0)
    entered_at: Mapped[float] = mapped_column(Float)
    flagged: Mapped[bool] = mapped_column(default=False)
    filename: Mapped[Optional[str]] = mapped_column(Text)
    # attempts spent at the job's current stage: a claim spends one, a
    # release gives it back, a success (advance) starts the next stage at 0
    attempts: Mapped[int] = mapped_column(default=0)
    state: Mapped[str] = mapped_column(String(16), default=JobState.ACTIVE.value)
    priority: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    max_attempts: Mapped[Optional[int]] = mapped_column()  # None: the board's
    # upstream jobs not done yet (Dependency rows not yet satisfied): a job
    # is BLOCKED while this is above 0
    waiting_on: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    # Set by API claims and heartbeats: a leased job's lifetime counts from
    # its worker's last heartbeat instead of from entered_at.
    heartbeat_at: Mapped[Optional[float]] = mapped_column(Float)
    result: Mapped[Optional[str]] = mapped_column(Text)  # JSON reported on advance
    error: Mapped[Optional[str]] = mapped_column(Text)  # the last failure's text


# Serves claims: (board, stage, state), highest priority first, then oldest
# (id is the last tie-breaker: PostgreSQL sorts nothing either), and the
# sweep: a stage's jobs of one priority older than a lifetime.
Index("ix_jobs_claim", Job.board_id, Job.stage, Job.state, Job.priority.desc(), Job.entered_at,
      Job.id)


class Dependency(db.Model):
    """Job ``job_id`` runs after job ``upstream_id`` (same board) has reached
    the board's last stage; ``satisfied`` once it has (counted once, even if
    the upstream job is moved by hand afterwards)."""

    __tablename__ = "dependencies"
    __table_args__ = (Index("ix_dependencies_job", "job_id"),)

    upstream_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"),
                                             primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"),
                                        primary_key=True)
    satisfied: Mapped[bool] = mapped_column(default=False)


class Attempt(db.Model):
    __tablename__ = "attempts"
    __table_args__ = (
        Index("ix_attempts_job", "job_id", "ended_at"),
        Index("ix_attempts_worker", "board_id", "worker", "ended_at"),  # heartbeats
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    board_id: Mapped[int] = mapped_column(ForeignKey("boards.id", ondelete="CASCADE"))
    stage: Mapped[int]
    worker: Mapped[Optional[str]] = mapped_column(String(200))
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[Optional[float]] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(16), default=Outcome.RUNNING.value)
    host: Mapped[Optional[str]] = mapped_column(String(200))
    exit_code: Mapped[Optional[int]]
    error: Mapped[Optional[str]] = mapped_column(Text)
    log: Mapped[Optional[str]] = mapped_column(Text)  # stdout/stderr tail
    resources: Mapped[Optional[str]] = mapped_column(Text)  # JSON: last sample
    allocation: Mapped[Optional[str]] = mapped_column(String(200))  # e.g. SLURM_JOB_ID
    notes: Mapped[int] = mapped_column(default=0, server_default=text("0"))  # kept (events)


class Worker(db.Model):
    """A process that claims through the JSON API and heartbeats."""

    __tablename__ = "workers"
    __table_args__ = (UniqueConstraint("board_id", "name", name="uq_workers_board_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    board_id: Mapped[int] = mapped_column(ForeignKey("boards.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    host: Mapped[Optional[str]] = mapped_column(String(200))
    pid: Mapped[Optional[int]]
    first_seen: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16), default=WorkerState.ALIVE.value)
    resources: Mapped[Optional[str]] = mapped_column(Text)  # JSON: last sample
    allocation: Mapped[Optional[str]] = mapped_column(String(200))  # the batch job it runs in


class AllocationState(str, enum.Enum):
    PENDING = "pending"  # in the scheduler's queue
    RUNNING = "running"
    ENDED = "ended"


class Allocation(db.Model):
    """A batch allocation a pool asked a scheduler for, as the pool last
    saw it (the scheduler is the truth; the pool reports it here)."""

    __tablename__ = "allocations"

    board_id: Mapped[int] = mapped_column(ForeignKey("boards.id", ondelete="CASCADE"),
                                          primary_key=True)
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pool: Mapped[Optional[str]] = mapped_column(String(200))
    scheduler: Mapped[Optional[str]] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[Optional[str]] = mapped_column(Text)
    nodes: Mapped[Optional[int]]
    workers_per_node: Mapped[Optional[int]]
    time_limit_s: Mapped[Optional[float]] = mapped_column(Float)
    submitted_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[Optional[float]] = mapped_column(Float)
    ended_at: Mapped[Optional[float]] = mapped_column(Float)


class Sample(db.Model):
    """A running attempt's resources at one heartbeat: the resource log."""

    __tablename__ = "samples"
    __table_args__ = (Index("ix_samples_attempt", "attempt_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"))
    at: Mapped[float] = mapped_column(Float)
    host: Mapped[Optional[str]] = mapped_column(String(200))
    allocation: Mapped[Optional[str]] = mapped_column(String(200))
    cpu_percent: Mapped[Optional[float]] = mapped_column(Float)
    rss_bytes: Mapped[Optional[int]] = mapped_column(BigInteger)
    runtime_s: Mapped[Optional[float]] = mapped_column(Float)


class Token(db.Model):
    """A bearer token for a board's JSON API (only its SHA-256 is kept)."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    board_id: Mapped[int] = mapped_column(ForeignKey("boards.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[Optional[float]] = mapped_column(Float)
    # what the token may do on its board (jobserver/roles.py); tokens made
    # before roles existed are owner tokens
    role: Mapped[str] = mapped_column(String(20), default="owner", server_default="owner")
    expires_at: Mapped[Optional[float]] = mapped_column(Float)


class Event(db.Model):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_job", "job_id"),
        Index("ix_events_cursor", "board_id", "tx", "id"),
        {"sqlite_autoincrement": True},  # ids never handed out twice (the cursor)
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    board_id: Mapped[int] = mapped_column(ForeignKey("boards.id", ondelete="CASCADE"))
    job_id: Mapped[Optional[int]] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[float] = mapped_column(Float)
    stage: Mapped[Optional[int]]
    count: Mapped[int] = mapped_column(default=1)
    detail: Mapped[Optional[str]] = mapped_column(Text)
    # the writing transaction on PostgreSQL (its default, set by migration
    # 0007), 0 on SQLite: the cursor is (tx, id), see lifecycle/events.py
    tx: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class StageCount(db.Model):
    """Jobs per (board, stage, state), kept by lifecycle in the same
    transaction as every change, so that no page ever counts a million rows."""

    __tablename__ = "stage_counts"

    board_id: Mapped[int] = mapped_column(ForeignKey("boards.id", ondelete="CASCADE"),
                                          primary_key=True)
    stage: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    state: Mapped[str] = mapped_column(String(16), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, default=0)


class Throughput(db.Model):
    """Jobs that reached ``stage`` in one minute (epoch minute), per board:
    the throughput chart and the ETA read this, never the attempt history."""

    __tablename__ = "throughput"

    board_id: Mapped[int] = mapped_column(ForeignKey("boards.id", ondelete="CASCADE"),
                                          primary_key=True)
    stage: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(BigInteger, default=0)
    # the first and the last arrival within the minute: the rate is measured
    # over the time the board has actually been working, not whole minutes
    first_at: Mapped[Optional[float]] = mapped_column(Float)
    last_at: Mapped[Optional[float]] = mapped_column(Float)


# ------------------------------------------------------------ accounts

class User(db.Model):
    """A person (or a service) with API keys and board memberships."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # werkzeug.security's scrypt hash, for the dashboard's login (None: no login)
    password_hash: Mapped[Optional[str]] = mapped_column(String(255))
    admin: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    created_at: Mapped[float] = mapped_column(Float)


class ApiKey(db.Model):
    """A user's bearer key for the API (only its SHA-256 is kept)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[Optional[float]] = mapped_column(Float)


class Member(db.Model):
    """A user's role on a board."""

    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("board_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    board_id: Mapped[int] = mapped_column(ForeignKey("boards.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[float] = mapped_column(Float)


# ----------------------------------------------------------- live logs
# What running jobs print, sent in chunks with their workers' heartbeats
# (lifecycle/logs.py writes, joblogs.py reads).  Sizes are bytes of UTF-8.


class LogChunk(db.Model):
    """A piece of one attempt's stdout ('out') or stderr ('err') as a
    heartbeat brought it.  ``offset``: where it starts in its stream (the
    worker's count: a gap before it is output dropped on the way);
    ``pos``: where it starts among the output of both streams the server
    received for the attempt, in the order it came (readers read by it,
    the per-attempt bound drops by it)."""

    __tablename__ = "log_chunks"
    __table_args__ = (
        Index("ix_log_chunks_attempt", "attempt_id", "pos"),  # read in order
        Index("ix_log_chunks_board", "board_id", "id"),  # the board's oldest first
        Index("ix_log_chunks_job", "job_id"),
    )

    # 64 bits on PostgreSQL: a busy fleet adds chunks with every heartbeat
    # (SQLite's rowid is 64 bits as INTEGER already, and only then autoincrements)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"),
                                    primary_key=True)
    board_id: Mapped[int] = mapped_column(ForeignKey("boards.id", ondelete="CASCADE"))
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"))
    stream: Mapped[str] = mapped_column(String(3))  # 'out' or 'err'
    at: Mapped[float] = mapped_column(Float)
    offset: Mapped[int] = mapped_column(BigInteger)
    pos: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column()
    text: Mapped[str] = mapped_column(Text)


class AttemptLog(db.Model):
    """How much of an attempt's output the server has received: the end of
    each stream (the worker's count) and of its kept chunks (``pos``)."""

    __tablename__ = "attempt_logs"
    __table_args__ = (Index("ix_attempt_logs_job", "job_id"),)

    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"),
                                            primary_key=True, autoincrement=False)
    board_id: Mapped[int] = mapped_column(ForeignKey("boards.id", ondelete="CASCADE"))
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    out_end: Mapped[int] = mapped_column(BigInteger, default=0)
    err_end: Mapped[int] = mapped_column(BigInteger, default=0)
    pos: Mapped[int] = mapped_column(BigInteger, default=0)


class BoardLog(db.Model):
    """Bytes of live log a board keeps (``n``, a kept counter: the bound
    is checked without adding up the board's chunks)."""

    __tablename__ = "board_logs"

    board_id: Mapped[int] = mapped_column(ForeignKey("boards.id", ondelete="CASCADE"),
                                          primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(BigInteger, default=0)
