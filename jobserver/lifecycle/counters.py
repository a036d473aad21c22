"""Counters kept beside every change: jobs per (stage, state) and jobs
reaching each stage per minute.  Each lifecycle transaction collects its
deltas in a Tally and applies them before it commits."""
from __future__ import annotations

import collections
import functools
from typing import Any

from sqlalchemy import Connection

from ..dialect import Hot, add_to_counters
from ..models import StageCount, Throughput

COUNTS = StageCount.__table__
THROUGHPUT = Throughput.__table__


MULTI_ROW = 4  # counters added to in one statement (a claim moves 2, a report 2 or 3)


@functools.lru_cache(maxsize=16)
def _statement(table_name: str, dialect_name: str, rows: int) -> Hot:
    if table_name == COUNTS.name:
        return Hot(add_to_counters(COUNTS, ["board_id", "stage", "state"], dialect_name,
                                   rows=rows))
    return Hot(add_to_counters(THROUGHPUT, ["board_id", "stage", "minute"], dialect_name,
                               latest=("last_at",), rows=rows))


def _add(conn: Connection, table_name: str, rows: list[dict[str, Any]]) -> None:
    """Add to these counter rows: one statement for a few, else executemany."""
    if not rows:
        return
    dialect_name = conn.dialect.name
    if len(rows) == 1:
        _statement(table_name, dialect_name, 1).run(conn, rows[0])
    elif len(rows) > MULTI_ROW:
        conn.execute(_statement(table_name, dialect_name, 1).statement, rows)
    else:
        _statement(table_name, dialect_name, len(rows)).run(
            conn, {f"{k}_{i}": v for i, row in enumerate(rows) for k, v in row.items()})


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
        # rows in key order: two transactions that touch the same counters
        # lock them in the same order (PostgreSQL), so they never deadlock
        _add(conn, COUNTS.name, [{"board_id": b, "stage": s, "state": st, "n": n}
                                 for (b, s, st), n in sorted(self.counts.items()) if n])
        minute = int(now // 60)
        _add(conn, THROUGHPUT.name, [{"board_id": b, "stage": s, "minute": minute, "n": n,
                                      "first_at": now, "last_at": now}
                                     for (b, s), n in sorted(self.reached.items()) if n])
        self.counts.clear()
        self.reached.clear()
