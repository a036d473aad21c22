"""The one policy of `jobworker pool`, for every scheduler: how many
allocations the board's work needs, which queued ones to cancel, when the
pool is finished, and when to stop submitting after refusals.

Pure functions of what the pool last read (no I/O), so the rules can be
read and tested on their own:

* Work that can be claimed now is ``waiting``; ``running`` jobs occupy
  slots; ``coming`` jobs (at earlier stages, or blocked behind jobs still
  on their way) will be claimable later.
* The pool wants ``ceil((waiting + running) / slots)`` allocations while
  something waits, never more than ``max_allocations``; none for work
  that is not claimable yet (workers would sit idle), except the
  ``min_allocations`` it keeps while any work is left.
* Queued (pending) allocations beyond what the work needs are cancelled,
  newest first; running ones are never cancelled: their workers leave by
  themselves after ``--idle-exit``.
* Finished: nothing waiting, running or coming, and no allocation left
  (never, with ``continuous``).
* A refused submission is retried after a pause that doubles (3 s, 6 s,
  ...); after ``REFUSALS`` refusals in a row the pool submits no more
  (HyperQueue pauses its queue in the same way).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from .allocation import Allocation, State

REFUSALS = 3  # refused submissions in a row after which the pool stops submitting
REFUSAL_PAUSE = 3.0  # seconds before retrying after the first refusal (doubling)


@dataclass(frozen=True)
class Work:
    """The board as a pool for one stage sees it."""
    waiting: int  # claimable now at the stage
    running: int  # at the stage above it (claimed, running)
    coming: int = 0  # not claimable yet but on their way (earlier stages, blocked)
    done: int = 0  # past it

    @property
    def left(self) -> int:
        return self.waiting + self.running + self.coming


@dataclass(frozen=True)
class Limits:
    max_allocations: int
    min_allocations: int = 0
    slots: int = 1  # jobs one allocation runs at once (nodes x workers per node)


@dataclass
class Decision:
    submit: int = 0
    cancel: list[Allocation] = field(default_factory=list)
    finished: bool = False


def wanted(work: Work, limits: Limits) -> int:
    """Allocations the work needs, within the limits."""
    need = math.ceil((work.waiting + work.running) / limits.slots) if work.waiting else 0
    if work.left:
        need = max(need, limits.min_allocations)
    return min(need, limits.max_allocations)


def decide(work: Work, allocations: Sequence[Allocation], limits: Limits,
           continuous: bool = False, submitting: bool = True) -> Decision:
    """What to do now, given the board's work and the pool's allocations."""
    live = [a for a in allocations if a.live]
    want = wanted(work, limits)
    decision = Decision()
    if submitting:
        decision.submit = max(0, want - len(live))
    extra = len(live) - want
    if extra > 0:
        pending = sorted((a for a in live if a.state is State.PENDING),
                         key=lambda a: a.submitted, reverse=True)
        decision.cancel = pending[:extra]
    decision.finished = (not continuous and not work.left
                         and len(live) == len(decision.cancel))
    return decision


class Refusals:
    """Refused submissions in a row: when the next try may be, and whether
    the pool has stopped submitting."""

    def __init__(self, limit: int = REFUSALS, pause: float = REFUSAL_PAUSE) -> None:
        self.limit = limit
        self.pause = pause
        self.in_a_row = 0
        self.total = 0
        self.last: str | None = None
        self.next_try = 0.0

    @property
    def stopped(self) -> bool:
        return self.in_a_row >= self.limit

    def refused(self, message: str, now: float) -> None:
        self.in_a_row += 1
        self.total += 1
        self.last = message
        self.next_try = now + self.pause * 2 ** (self.in_a_row - 1)

    def accepted(self) -> None:
        self.in_a_row = 0

    def may_submit(self, now: float) -> bool:
        return not self.stopped and now >= self.next_try
