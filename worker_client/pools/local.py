"""Local back-end: an "allocation" is one `jobworker run` process per node
on this machine (a laptop, one big node, tests without Slurm).  It starts
at once (never pending), ends when its workers leave, and is stopped at
its time limit or when cancelled as Slurm would: SIGTERM to every process
in it (the workers and their commands), SIGKILL after ``KILL_WAIT``."""
from __future__ import annotations

import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import IO, Sequence

import psutil

from .allocation import Allocation, AllocationSpec, Refused, State

log = logging.getLogger(__name__)

KILL_WAIT = 30.0  # seconds between SIGTERM and SIGKILL (Slurm's KillWait default)


@dataclass
class _Procs:
    procs: list[subprocess.Popen]
    started: float = field(default_factory=time.monotonic)
    terminated: float | None = None  # when SIGTERM was sent
    why: str | None = None  # TIMEOUT, CANCELLED


class LocalScheduler:
    name = "local"

    def __init__(self, spec: AllocationSpec, token: str) -> None:
        self.spec = spec
        self.token = token
        self.count = 0
        self.prefix = "local-" + re.sub(r"[^A-Za-z0-9.-]+", "-", socket.gethostname())[:60] \
            + f"-{os.getpid()}"
        self.running: dict[str, _Procs] = {}

    def describe(self) -> str:
        line = self.spec.worker_line()
        return "\n".join(
            [f"# jobworker pool --scheduler local: board {self.spec.board}, stage "
             f"{self.spec.stage}; per allocation, {self.spec.nodes} process"
             f"{'' if self.spec.nodes == 1 else 'es'} like this one",
             "# (JOBSERVER_TOKEN from the pool's environment, not shown):",
             f"JOBSERVER_URL={shlex.quote(self.spec.url)} "
             f"JOBSERVER_BOARD={shlex.quote(self.spec.board)} "
             f"JOBSERVER_ALLOCATION={self.prefix}-N {line}", ""])

    def submit(self) -> Allocation:
        self.count += 1
        alloc_id = f"{self.prefix}-{self.count}"
        env = dict(os.environ, JOBSERVER_URL=self.spec.url, JOBSERVER_BOARD=self.spec.board,
                   JOBSERVER_TOKEN=self.token, JOBSERVER_ALLOCATION=alloc_id)
        procs = []
        try:
            for node in range(self.spec.nodes):
                out = self._output(alloc_id, node)
                try:
                    procs.append(subprocess.Popen(self.spec.worker_argv(), env=env, stdout=out,
                                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                  start_new_session=True))
                finally:
                    out.close()
        except OSError as exc:
            for p in procs:
                p.kill()
            raise Refused(f"cannot start {self.spec.worker_argv()[0]}: "
                          f"{exc.strerror or exc}") from None
        self.running[alloc_id] = _Procs(procs)
        a = Allocation(alloc_id)
        a.update(State.RUNNING, None)
        return a

    def _output(self, alloc_id: str, node: int) -> IO[bytes]:
        suffix = f".{node}" if self.spec.nodes > 1 else ""
        self.spec.output_dir.mkdir(parents=True, exist_ok=True)
        return open(self.spec.output_dir / f"{self.spec.job_name}-{alloc_id}{suffix}.out", "ab")

    def poll(self, allocations: Sequence[Allocation]) -> None:
        now = time.monotonic()
        for a in allocations:
            p = self.running.get(a.id)
            if not a.live or p is None:
                continue
            if (self.spec.time_s is not None and p.terminated is None
                    and now - p.started >= self.spec.time_s):
                self._terminate(p, "TIMEOUT")
            if p.terminated is not None and now - p.terminated >= KILL_WAIT:
                for proc in p.procs:
                    _signal_tree(proc, signal.SIGKILL)
            codes = [proc.poll() for proc in p.procs]
            if all(c is not None for c in codes):
                del self.running[a.id]
                bad = sorted({c for c in codes if c})
                reason = p.why or ("COMPLETED" if not bad else
                                   "FAILED (exit code " + ", ".join(map(str, bad)) + ")")
                a.update(State.ENDED, reason)

    def _terminate(self, p: _Procs, why: str) -> None:
        p.why = p.why or why
        p.terminated = time.monotonic()
        for proc in p.procs:
            _signal_tree(proc, signal.SIGTERM)

    def cancel(self, allocation: Allocation) -> None:
        p = self.running.get(allocation.id)
        if p is not None and p.terminated is None:
            self._terminate(p, "CANCELLED")

    def adopt(self) -> list[Allocation]:
        return []  # this pool's processes only

    def stop(self, allocations: Sequence[Allocation]) -> None:
        """The workers are told to stop (they finish their running jobs);
        the pool waits for them as it does for ended allocations."""
        for a in allocations:
            self.cancel(a)


def _signal_tree(proc: subprocess.Popen, sig: int) -> None:
    """A worker and every process under it (its commands run in sessions
    of their own, out of reach of a process group signal)."""
    if proc.poll() is not None:
        return
    try:
        tree = [psutil.Process(proc.pid)]
        tree += tree[0].children(recursive=True)
    except psutil.Error:
        return
    for p in tree:
        try:
            p.send_signal(sig)
        except psutil.Error:
            pass
