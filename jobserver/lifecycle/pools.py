"""Pools: the batch allocations a pool asked a scheduler for (as the pool
reports them) and the resource log of the attempts running in them."""
from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, select, update

from .. import live
from ..dialect import insert_ignore, write_transaction
from ..models import AllocationState
from .common import ALLOCATIONS, SAMPLES, LifecycleError, _dialect, _engine

ALLOCATION_FIELDS = ("pool", "scheduler", "reason", "nodes", "workers_per_node", "time_limit_s")
MAX_TEXT = 200


def report_allocation(board_id: int, allocation: str, state: str,
                      **fields: Any) -> None:
    """Record what the scheduler says about one allocation: created at its
    first report (submitted now), started when it first runs, ended once."""
    if state not in {s.value for s in AllocationState}:
        raise LifecycleError(f"an allocation is pending, running or ended, not {state!r}")
    unknown = set(fields) - set(ALLOCATION_FIELDS)
    if unknown:
        raise LifecycleError(f"unknown allocation fields: {', '.join(sorted(unknown))}")
    now = time.time()
    given = {k: v for k, v in fields.items() if v is not None}
    with write_transaction(_engine()) as conn:
        conn.execute(insert_ignore(ALLOCATIONS, ["board_id", "id"], _dialect()).values(
            board_id=board_id, id=allocation, state=state, submitted_at=now, **given))
        row = conn.execute(select(ALLOCATIONS.c.started_at, ALLOCATIONS.c.ended_at)
                           .where(ALLOCATIONS.c.board_id == board_id,
                                  ALLOCATIONS.c.id == allocation)
                           .with_for_update()).one()
        values: dict[str, Any] = dict(given)
        if row.ended_at is None:  # an ended allocation stays ended
            values["state"] = state
            if state == AllocationState.RUNNING.value and row.started_at is None:
                values["started_at"] = now
            if state == AllocationState.ENDED.value:
                values["ended_at"] = now
        if values:
            conn.execute(update(ALLOCATIONS).where(ALLOCATIONS.c.board_id == board_id,
                                                   ALLOCATIONS.c.id == allocation)
                         .values(**values))
    live.mark_dirty(board_id)


def _number(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) and abs(value) < 1e18 else None


def record_samples(conn: Connection, samples: dict[int, dict[str, Any]],
                   allocations: dict[int, str | None], now: float) -> None:
    """Append running attempts' resource samples to the resource log (in the
    heartbeat's transaction; ``samples``: attempt id -> the worker's sample,
    for attempts known to be this worker's; ``allocations``: attempt id ->
    the allocation it runs in)."""
    rows = []
    for attempt, s in samples.items():
        host = s.get("host")
        rss = _number(s.get("rss_bytes"))
        rows.append({"attempt_id": attempt, "at": now, "allocation": allocations.get(attempt),
                     "host": host[:MAX_TEXT] if isinstance(host, str) else None,
                     "cpu_percent": _number(s.get("cpu_percent")),
                     "rss_bytes": None if rss is None else int(rss),
                     "runtime_s": _number(s.get("runtime_s"))})
    if rows:
        conn.execute(SAMPLES.insert(), rows)
