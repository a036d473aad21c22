"""What a pool asks a scheduler for (:class:`AllocationSpec`), what it hears
back (:class:`Allocation`), and the interface both back-ends offer
(:class:`Scheduler`)."""
from __future__ import annotations

import enum
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence


class State(str, enum.Enum):
    """An allocation as the server's registry knows it."""
    PENDING = "pending"  # in the scheduler's queue
    RUNNING = "running"  # its workers run (or the scheduler still cleans up after them)
    ENDED = "ended"


@dataclass
class Allocation:
    id: str
    state: State = State.PENDING
    reason: str | None = None  # the scheduler's word: Resources, COMPLETED, CANCELLED, TIMEOUT...
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    ended: float | None = None
    adopted: bool = False  # found in the queue at start (an earlier pool's)
    reported: tuple[str, str | None] | None = None  # (state, reason) the server last heard

    @property
    def live(self) -> bool:
        return self.state is not State.ENDED

    def update(self, state: State, reason: str | None) -> bool:
        """Take what the scheduler says; True if the state changed."""
        changed = state is not self.state
        now = time.monotonic()
        if state is State.RUNNING and self.started is None:
            self.started = now
        if state is State.ENDED and self.ended is None:
            self.ended = now
        self.state, self.reason = state, reason
        return changed


class Refused(RuntimeError):
    """The scheduler refused a submission; the message is its own."""


class Scheduler(Protocol):
    name: str  # "slurm" or "local", as the server's registry records it

    def describe(self) -> str:
        """What a submission would do: the batch script (``--dry-run``)."""
    def submit(self) -> Allocation:
        """Ask for one allocation; raises :class:`Refused`."""
    def poll(self, allocations: Sequence[Allocation]) -> None:
        """Update the live ones in place from what the scheduler says."""
    def cancel(self, allocation: Allocation) -> None: ...
    def adopt(self) -> list[Allocation]:
        """Allocations already queued for this board and stage (a restarted pool)."""
    def stop(self, allocations: Sequence[Allocation]) -> None:
        """The pool stops early: what to do with the live ones."""


@dataclass
class AllocationSpec:
    """One allocation: ``nodes`` nodes, each running one `jobworker run`
    with ``workers_per_node`` commands at once for ``stage``."""
    url: str
    board: str
    stage: int
    command: Sequence[str] = ()
    workers_per_node: int = 1
    nodes: int = 1
    time_s: int | None = None
    cpus: int | None = None
    mem: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    sbatch_args: Sequence[str] = ()
    idle_exit: float = 60.0
    output_dir: Path = Path(".")
    worker: Sequence[str] = ()  # the jobworker command [default: the one running]

    @property
    def slots(self) -> int:
        """Jobs one allocation runs at once."""
        return self.nodes * self.workers_per_node

    @property
    def job_name(self) -> str:
        return f"jobworker-{self.board}-s{self.stage}"

    def worker_argv(self) -> list[str]:
        argv = [*(self.worker or jobworker_command()), "run", "--stage", str(self.stage),
                "--parallel", str(self.workers_per_node), "--idle-exit", f"{self.idle_exit:g}"]
        return argv + (["--", *self.command] if self.command else [])

    def worker_line(self) -> str:
        return shlex.join(self.worker_argv())


def jobworker_command() -> list[str]:
    """The `jobworker` next to this Python (a virtualenv's bin/), else this
    Python running the package: the same install on the nodes (a shared
    file system), never whatever `jobworker` a node's PATH finds first."""
    beside = Path(sys.executable).with_name("jobworker")
    if beside.is_file():
        return [str(beside)]
    return [sys.executable, "-m", "worker_client"]


TIME = re.compile(r"^(?:(?P<d>\d+)-(?P<dh>\d+)(?::(?P<dm>\d+)(?::(?P<ds>\d+))?)?"
                  r"|(?P<a>\d+)(?::(?P<b>\d+)(?::(?P<c>\d+))?)?)$")


def parse_time(text: str) -> int:
    """Seconds in a Slurm time limit: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or
    D-HH:MM:SS.  ValueError (saying which forms work) otherwise, or for 0."""
    m = TIME.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a time limit: give HH:MM:SS (or MM, MM:SS, "
                         f"D-HH, D-HH:MM, D-HH:MM:SS), e.g. 01:30:00")
    g = {k: int(v) for k, v in m.groupdict().items() if v is not None}
    if "d" in g:
        seconds = g["d"] * 86400 + g["dh"] * 3600 + g.get("dm", 0) * 60 + g.get("ds", 0)
        parts = [g.get("dm", 0), g.get("ds", 0)]
    elif "c" in g:  # HH:MM:SS
        seconds = g["a"] * 3600 + g["b"] * 60 + g["c"]
        parts = [g["b"], g["c"]]
    elif "b" in g:  # MM:SS
        seconds = g["a"] * 60 + g["b"]
        parts = [g["b"]]
    else:  # MM
        seconds = g["a"] * 60
        parts = []
    if any(p >= 60 for p in parts):
        raise ValueError(f"{text!r}: minutes and seconds go up to 59")
    if seconds <= 0:
        raise ValueError(f"{text!r}: a time limit must be longer than 0")
    return seconds


def slurm_time(seconds: int) -> str:
    """D-HH:MM:SS (HH:MM:SS under a day)."""
    d, rest = divmod(int(seconds), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{d}-" if d else "") + f"{h:02d}:{m:02d}:{s:02d}"
