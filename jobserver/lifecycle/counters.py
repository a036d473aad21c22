"""Counters kept beside every change: jobs per (stage, state) and jobs
reaching each stage per minute.  Each lifecycle transaction collects its
deltas in a Tally and applies them before it commits."""
from __future__ import annotations

import collections
import functools
from typing import Any

from sqlalchemy import Connection

from ..dialect import add_to_counters
from ..models import StageCount, Throughput

COUNTS = StageCount.__table__
THROUGHPUT = Throughput.__table__


@functools.lru_cache(maxsize=4)
def _statements(dialect_name: str) -> tuple[Any, Any]:
    return (add_to_counters(COUNTS, ["board_id", "stage", "state"], dialect_name),
            add_to_counters(THROUGHPUT, ["board_id", "stage", "minute"], dialect_name,
                            latest=("last_at",)))


class Tally:
    """Deltas of one transaction, per board."""

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[int, int, str]] = collections.Counter()
        self.reached: collections.Counter[tuple[int, int]] = collections.Counter()

    def move(self, board_id: int, n: int, old: tuple[int, str] | None,
             new: tuple[int, str] | None) -> None:
        """n jobs go from (stage, state) ``old`` to ``new`` (None: nowhere)."""
        if not n or old == new:
            return
        if old is not None:
            self.counts[(board_id, *old)] -= n
        if new is not None:
            self.counts[(board_id, *new)] += n

    def reach(self, board_id: int, stage: int, n: int = 1) -> None:
        """n jobs were reported done into ``stage`` (for throughput)."""
        self.reached[(board_id, stage)] += n

    def apply(self, conn: Connection, now: float) -> None:
        counts_stmt, throughput_stmt = _statements(conn.dialect.name)
        # rows in key order: two transactions that touch the same counters
        # lock them in the same order (PostgreSQL), so they never deadlock
        rows = [{"board_id": b, "stage": s, "state": st, "n": n}
                for (b, s, st), n in sorted(self.counts.items()) if n]
        if rows:
            conn.execute(counts_stmt, rows)
        minute = int(now // 60)
        rows = [{"board_id": b, "stage": s, "minute": minute, "n": n, "first_at": now,
                 "last_at": now}
                for (b, s), n in sorted(self.reached.items()) if n]
        if rows:
            conn.execute(throughput_stmt, rows)
        self.counts.clear()
        self.reached.clear()
