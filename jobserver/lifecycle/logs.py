"""Live logs: the chunks of output running jobs send with their workers'
heartbeats, kept per attempt within two bounds.

A worker sends, per running attempt, the output printed since its last
acknowledged heartbeat, in the order it came: ``[{"stream": "out"|"err",
"offset": n, "text": s}, ...]``, ``offset`` being where ``s`` starts in its
stream (bytes of UTF-8, the worker's count).  A retried heartbeat repeats a
chunk the server has kept already: the part before the stream's end is
skipped.  A gap before ``offset`` is output the worker dropped on the way
(a reader sees a marker).

Bounds (LOG_MAX_PER_JOB per attempt, LOG_MAX_PER_BOARD per board, in bytes)
drop the oldest output: an attempt's by position (``pos``, no counting; a
chunk across the cut loses its start, up to a line's start if it has one),
a board's from a kept counter (``board_logs.n``), checked on every
heartbeat that brings output and trimmed to 7/8 of the bound when passed,
so a board at its bound does not trim on every heartbeat.

Lock order (PostgreSQL): the heartbeat holds its jobs, attempts and
worker rows; here it writes its attempts' ``attempt_logs`` rows and new
chunks, then locks the board's counter row, and only then deletes chunks
(its own attempts' or the board's oldest).  Every chunk delete runs under
that row lock, so two heartbeats never wait on each other's deletes; a
board delete removes chunks after their attempts (as their cascade does).
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

from flask import current_app
from sqlalchemy import Connection, bindparam, delete, select, update

from ..dialect import add_to_counters
from ..models import AttemptLog, BoardLog, LogChunk

log = logging.getLogger(__name__)

CHUNKS = LogChunk.__table__
ATTEMPT_LOGS = AttemptLog.__table__
BOARD_LOGS = BoardLog.__table__
STREAMS = ("out", "err")
TRIM_BATCH = 500  # chunks looked at per statement when a board's bound is passed
LOW_WATER = 7 / 8  # a board passing its bound is trimmed to this part of it


def char_start(data: bytes | bytearray, i: int) -> int:
    """The first index >= i that starts a UTF-8 character (or len)."""
    n = len(data)
    while i < n and 0x80 <= data[i] < 0xC0:
        i += 1
    return min(i, n)


def clean(text: str) -> str:
    """Text as every database stores it: a NUL (PostgreSQL's text refuses
    it) becomes U+FFFD, a lone surrogate '?' (the worker sends neither)."""
    text = text.replace("\x00", "\ufffd")
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8")


def limits() -> tuple[int, int]:
    """(bytes per attempt, bytes per board), from the configuration."""
    cfg = current_app.config
    return max(int(cfg["LOG_MAX_PER_JOB"]), 0), max(int(cfg["LOG_MAX_PER_BOARD"]), 0)


def keep_chunks(conn: Connection, board_id: int, worker: str, found: Mapping[int, Any],
                chunks: Mapping[int, Sequence[Mapping[str, Any]]] | None,
                now: float) -> int:
    """Keep the output chunks of the open attempts ``found`` that this
    worker holds (others' are ignored), trimming to the bounds.  Returns
    the bytes added."""
    per_attempt, per_board = limits()
    ids = sorted(a for a in chunks or () if a in found and found[a].worker == worker)
    if not ids or not per_attempt or not per_board:
        return 0
    chunks = chunks or {}
    states = {r.attempt_id: r for r in conn.execute(
        select(ATTEMPT_LOGS).where(ATTEMPT_LOGS.c.attempt_id.in_(ids)))}
    rows: list[dict[str, Any]] = []
    new_states, changed_states, trims = [], [], []
    added = 0
    for a in ids:
        st = states.get(a)
        ends = {"out": st.out_end if st else 0, "err": st.err_end if st else 0}
        pos = st.pos if st else 0
        for piece in chunks[a]:
            stream = piece["stream"]
            if stream not in ends or not piece["text"]:
                continue
            offset = int(piece["offset"])
            data = clean(piece["text"]).encode("utf-8")
            skip = ends[stream] - offset  # what a retried heartbeat repeats
            if skip >= len(data):
                continue
            if skip > 0:
                cut = char_start(data, skip)
                data, offset = data[cut:], offset + cut
            if len(data) > per_attempt:  # more than the bound at once: its end
                cut = char_start(data, len(data) - per_attempt)
                data, offset = data[cut:], offset + cut
            if not data:
                continue
            rows.append({"board_id": board_id, "job_id": found[a].job_id, "attempt_id": a,
                         "stream": stream, "at": now, "offset": offset, "pos": pos,
                         "size": len(data), "text": data.decode("utf-8")})
            ends[stream] = offset + len(data)
            pos += len(data)
            added += len(data)
        values = {"attempt_id": a, "board_id": board_id, "job_id": found[a].job_id,
                  "out_end": ends["out"], "err_end": ends["err"], "pos": pos}
        if st is None:
            new_states.append(values)
        elif (st.out_end, st.err_end, st.pos) != (ends["out"], ends["err"], pos):
            changed_states.append({f"new_{k}": values[k]
                                   for k in ("attempt_id", "out_end", "err_end", "pos")})
        if pos > per_attempt:
            trims.append((a, pos - per_attempt))
    if not rows:
        return 0
    conn.execute(CHUNKS.insert(), rows)
    if new_states:
        conn.execute(ATTEMPT_LOGS.insert(), new_states)
    if changed_states:
        conn.execute(_UPDATE_STATE, changed_states)
    # the board's counter row: locked from here to the commit (see above)
    kept = conn.execute(add_to_counters(BOARD_LOGS, ["board_id"], conn.dialect.name)
                        .returning(BOARD_LOGS.c.n), {"board_id": board_id, "n": added}
                        ).scalar_one()
    freed = sum(_trim_attempt(conn, a, cut) for a, cut in trims)
    if kept - freed > per_board:
        freed += _trim_board(conn, board_id, kept - freed, int(per_board * LOW_WATER))
    if freed:
        conn.execute(update(BOARD_LOGS).where(BOARD_LOGS.c.board_id == board_id)
                     .values(n=max(kept - freed, 0)))
    return added


_UPDATE_STATE = (
    update(ATTEMPT_LOGS).where(ATTEMPT_LOGS.c.attempt_id == bindparam("new_attempt_id"))
    .values(out_end=bindparam("new_out_end"), err_end=bindparam("new_err_end"),
            pos=bindparam("new_pos"))
)


def _trim_attempt(conn: Connection, attempt_id: int, cut: int) -> int:
    """Drop the attempt's output before position ``cut``: the chunks that
    end there, and the start of the one that straddles it.  Returns the
    bytes dropped."""
    freed = sum(conn.execute(delete(CHUNKS).where(
        CHUNKS.c.attempt_id == attempt_id, CHUNKS.c.pos < cut,
        CHUNKS.c.pos + CHUNKS.c.size <= cut).returning(CHUNKS.c.size)).scalars())
    part = conn.execute(select(CHUNKS.c.id, CHUNKS.c.pos, CHUNKS.c.text)
                        .where(CHUNKS.c.attempt_id == attempt_id, CHUNKS.c.pos < cut)
                        .order_by(CHUNKS.c.pos).limit(1)).first()
    if part is not None:
        data = part.text.encode("utf-8")
        k = data.find(b"\n", cut - part.pos) + 1  # from a line's start, where there is one
        k = k or char_start(data, cut - part.pos)
        if k < len(data):
            conn.execute(update(CHUNKS).where(CHUNKS.c.id == part.id).values(
                text=data[k:].decode("utf-8"), pos=CHUNKS.c.pos + k,
                offset=CHUNKS.c.offset + k, size=CHUNKS.c.size - k))
        else:
            conn.execute(delete(CHUNKS).where(CHUNKS.c.id == part.id))
        freed += k
    return freed


def _trim_board(conn: Connection, board_id: int, kept: int, target: int) -> int:
    """Drop the board's oldest chunks until at most ``target`` bytes are
    kept; returns the bytes dropped.  Runs out of chunks only if the
    counter was high (a board delete cut short): then it is all of them."""
    need, freed = kept - target, 0
    while freed < need:
        batch = conn.execute(select(CHUNKS.c.id, CHUNKS.c.size)
                             .where(CHUNKS.c.board_id == board_id)
                             .order_by(CHUNKS.c.id).limit(TRIM_BATCH)).all()
        if not batch:
            return kept
        drop = []
        for chunk_id, size in batch:
            drop.append(chunk_id)
            freed += size
            if freed >= need:
                break
        conn.execute(delete(CHUNKS).where(CHUNKS.c.id.in_(drop)))
    log.info("board %d: live logs past their bound, %d bytes of the oldest dropped",
             board_id, freed)
    return freed


def delete_jobs_logs(conn: Connection, job_ids: list[int]) -> None:
    """A board delete's chunk of jobs: their chunks and log states (after
    their attempts, see the lock order above).  The board's counter goes
    with the board."""
    conn.execute(delete(CHUNKS).where(CHUNKS.c.job_id.in_(job_ids)))
    conn.execute(delete(ATTEMPT_LOGS).where(ATTEMPT_LOGS.c.job_id.in_(job_ids)))
