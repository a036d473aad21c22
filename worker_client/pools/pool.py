"""The loop of `jobworker pool`: every ``poll`` seconds it reads the board
(one status request), asks the scheduler about its allocations, reports
what changed to the server's allocation registry, and applies the policy
(:mod:`.policy`): submit, cancel queued allocations nothing is left for,
finish, or stop submitting after refusals.  On a terminal a status line
shows allocations pending/running, workers, and jobs waiting/running/done.
SIGTERM or SIGINT: queued allocations are cancelled and the pool leaves
(running Slurm allocations finish their jobs; local ones are stopped)."""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..client import ApiError, Client, Unavailable
from ..terminal import StatusLine
from .allocation import Allocation, AllocationSpec, Refused, Scheduler, State
from .policy import Limits, Refusals, Work, decide

log = logging.getLogger(__name__)

LOG_EVERY = 30.0  # seconds between two progress lines in a log (not a terminal)
STOP_WAIT = 60.0  # seconds a stopping pool waits for its local workers to leave


def work_at(status: dict[str, Any], stage: int) -> Work:
    """A board's status as a pool for ``stage`` sees it (``counts``: active
    jobs per stage, keys as ints).  Blocked jobs count as coming while
    anything on the board still moves; with a running cap, waiting jobs
    beyond its room are not claimable now."""
    counts = {int(k): v for k, v in status.get("counts", {}).items()}
    progress = status.get("progress") or {}
    waiting = counts.get(stage, 0)
    cap = status.get("max_running")
    if cap is not None:
        waiting = min(waiting, max(0, cap - int(progress.get("running", 0))))
    moving = int(progress.get("waiting", 0)) + int(progress.get("running", 0))
    coming = (sum(n for s, n in counts.items() if s < stage)
              + (int(status.get("blocked", 0)) if moving else 0)
              + counts.get(stage, 0) - waiting)
    return Work(waiting=waiting, running=counts.get(stage + 1, 0), coming=coming,
                done=sum(n for s, n in counts.items() if s > stage + 1))


@dataclass
class Figures:
    """What the pool did, for its last line."""
    submitted: int = 0
    peak: int = 0
    refused: int = 0
    cancelled: int = 0
    drained: float | None = None  # when nothing was left on the board for the stage
    gone: float | None = None  # when, after that, no allocation was left


class Pool:
    def __init__(self, client: Client, scheduler: Scheduler, spec: AllocationSpec,
                 limits: Limits, continuous: bool = False, poll: float = 10.0,
                 tty: bool | None = None) -> None:
        self.client = client
        self.scheduler = scheduler
        self.spec = spec
        self.limits = limits
        self.continuous = continuous
        self.poll = poll
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.allocations: list[Allocation] = []
        self.refusals = Refusals()
        self.figures = Figures()
        self.started = time.monotonic()
        self.work: Work | None = None
        self.failed = 0  # the board's jobs failed for good (any stage)
        self.workers = 0
        self.reporting = True
        self.stopping = False
        self._wake = threading.Event()
        self.status = StatusLine(sys.stderr)
        self._logged = 0.0

    # -------------------------------------------------------------- signals

    def install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stopping = True
        self._wake.set()

    # ----------------------------------------------------------------- loop

    def run(self) -> int:
        """Until finished (0), stopped after refusals (1) or by a signal (1)."""
        if self.tty:
            self.status.capture_logging()
        try:
            return self._loop()
        finally:
            self.status.release_logging()

    def _loop(self) -> int:
        adopted = self.scheduler.adopt()
        if adopted:
            log.info("counting %d allocation%s already queued for board %s stage %d: %s",
                     len(adopted), "" if len(adopted) == 1 else "s", self.spec.board,
                     self.spec.stage, ", ".join(a.id for a in adopted))
            self.allocations += adopted
        while True:
            if self.stopping:
                return self._stop()
            self.scheduler.poll(self.allocations)
            self._read_board()
            self._report_all()
            now = time.monotonic()
            live = [a for a in self.allocations if a.live]
            if self.work is not None:
                decision = decide(self.work, live, self.limits, self.continuous,
                                  submitting=self.refusals.may_submit(now))
                for a in decision.cancel:
                    self.scheduler.cancel(a)
                    a.update(State.ENDED, "CANCELLED (by the pool: nothing left for it)")
                    self.figures.cancelled += 1
                    log.info("cancelled queued allocation %s: nothing left for it", a.id)
                self._submit(decision.submit)
                self._report_all()
                self._timing()
                if decision.finished:
                    self._show(final=True)
                    return 0
            live = [a for a in self.allocations if a.live]
            self.figures.peak = max(self.figures.peak, len(live))
            if self.refusals.stopped and not live:
                self._show(final=True)
                log.error("stopped submitting: the scheduler refused %d submissions in a row "
                          "(last: %s)", self.refusals.in_a_row, self.refusals.last)
                return 1
            self._show()
            wait = self.poll
            if self.refusals.in_a_row and not self.refusals.stopped:
                wait = min(wait, max(0.1, self.refusals.next_try - time.monotonic()))
            self._wake.wait(wait)
            self._wake.clear()

    def _submit(self, n: int) -> None:
        for _ in range(n):
            try:
                a = self.scheduler.submit()
            except Refused as exc:
                self.refusals.refused(str(exc), time.monotonic())
                self.figures.refused += 1
                if self.refusals.stopped:
                    log.error("%s refused the allocation: %s (%d in a row: no more "
                              "submissions)", self._submitter(), exc, self.refusals.in_a_row)
                else:
                    log.error("%s refused the allocation: %s (%d of %d in a row; trying "
                              "again in %.0f s)", self._submitter(), exc,
                              self.refusals.in_a_row, self.refusals.limit,
                              self.refusals.next_try - time.monotonic())
                return
            self.refusals.accepted()
            self.allocations.append(a)
            self.figures.submitted += 1
            log.info("submitted allocation %s (%d node%s x %d worker%s)", a.id,
                     self.spec.nodes, "" if self.spec.nodes == 1 else "s",
                     self.spec.workers_per_node, "" if self.spec.workers_per_node == 1 else "s")

    def _submitter(self) -> str:
        return "sbatch" if self.scheduler.name == "slurm" else "the local scheduler"

    def _stop(self) -> int:
        live = [a for a in self.allocations if a.live]
        self.scheduler.stop(live)
        deadline = time.monotonic() + STOP_WAIT
        if self.scheduler.name == "local":  # its workers are our children: wait for them
            while any(a.live for a in live) and time.monotonic() < deadline:
                time.sleep(0.2)
                self.scheduler.poll(live)
        self._report_all()
        running = [a.id for a in live if a.live]
        self._show(final=True)
        log.info("pool stopped by a signal%s", "" if not running else
                 f": allocation{'' if len(running) == 1 else 's'} {', '.join(running)} keep "
                 f"running until {'its' if len(running) == 1 else 'their'} workers have no work "
                 f"for {self.spec.idle_exit:g} s (scancel {' '.join(running)} to end them now)")
        return 1

    # ---------------------------------------------------------- the server

    def _read_board(self) -> None:
        try:
            status = self.client.status()
            self.work = work_at(status, self.spec.stage)
            self.failed = int(status.get("failed") or 0)
        except Unavailable as exc:  # the client waited already: carry on with the scheduler
            log.warning("%s; still trying", exc)
            self.work = None
            return
        if not self.reporting:
            return
        ours = {a.id for a in self.allocations}
        try:
            rows = self.client.allocations()
        except (ApiError, Unavailable) as exc:
            log.debug("allocations: %s", exc)
            return
        self.workers = sum(int(r.get("workers") or 0) for r in rows if r.get("id") in ours)

    def _report_all(self) -> None:
        for a in self.allocations:
            self._report(a)

    def _report(self, a: Allocation) -> None:
        """Tell the server's registry what changed (state or reason)."""
        now = (a.state.value, a.reason)
        if not self.reporting or a.reported == now:
            return
        fields: dict[str, Any] = {"reason": a.reason[:4000] if a.reason else None}
        if a.reported is None:
            fields.update(pool=self.name, scheduler=self.scheduler.name, nodes=self.spec.nodes,
                          workers_per_node=self.spec.workers_per_node,
                          time_limit_s=self.spec.time_s)
        try:
            self.client.report_allocation(a.id, a.state.value, **fields)
        except ApiError as exc:
            if exc.message.startswith(("The requested URL was not found",
                                       "The method is not allowed")):  # an older server
                self.reporting = False
                log.warning("the server does not keep allocations (%s): not reporting them",
                            exc.message)
            else:
                log.warning("could not report allocation %s: %s", a.id, exc.message)
            return
        except Unavailable as exc:
            log.warning("could not report allocation %s: %s", a.id, exc)
            return
        if a.reported is not None and a.reported[0] != a.state.value:
            log.info("allocation %s %s%s", a.id, a.state.value,
                     f" ({a.reason})" if a.reason else "")
        elif a.reported is None and a.state is not State.PENDING:
            log.info("allocation %s %s%s", a.id, a.state.value,
                     f" ({a.reason})" if a.reason else "")
        a.reported = now

    # -------------------------------------------------------------- figures

    def _timing(self) -> None:
        now = time.monotonic()
        if self.work is not None and self.work.left:
            self.figures.drained = self.figures.gone = None
            return
        if self.figures.drained is None:
            self.figures.drained = now
        if self.figures.gone is None and not any(a.live for a in self.allocations):
            self.figures.gone = now

    def line(self) -> str:
        live = [a for a in self.allocations if a.live]
        pending = sum(a.state is State.PENDING for a in live)
        w = self.work
        jobs = ("jobs ?" if w is None else
                f"jobs {w.waiting} waiting, {w.running} running, {w.done} done"
                + (f", {w.coming} coming" if w.coming else "")
                + (f", {self.failed} failed" if self.failed else ""))
        refused = (f" | {self.refusals.in_a_row} refused in a row"
                   if self.refusals.in_a_row else "")
        return (f"allocations {pending} pending, {len(live) - pending} running "
                f"(max {self.limits.max_allocations}), workers {self.workers} | {jobs}{refused}")

    def _show(self, final: bool = False) -> None:
        line = self.line()
        if self.tty:
            (self.status.finish if final else self.status.show)(line)
        elif final or time.monotonic() - self._logged >= LOG_EVERY:
            self._logged = time.monotonic()
            log.info("%s", line)

    def summary(self) -> str:
        f = self.figures
        w = self.work
        text = (f"board {self.spec.board} stage {self.spec.stage}: "
                + (f"{w.done} jobs past it" if w is not None else "")
                + (f" ({self.failed} failed on the board: jobworker status)" if self.failed
                   else "") + ("; " if w is not None or self.failed else "")
                + f"{f.submitted} allocation{'' if f.submitted == 1 else 's'} submitted "
                f"(at most {f.peak} at once), {f.refused} refused, {f.cancelled} cancelled "
                f"while queued")
        if f.drained is not None:
            text += f"; nothing left {f.drained - self.started:.0f} s after the start"
            if f.gone is not None:
                text += f", the last allocation gone {f.gone - f.drained:.0f} s later"
        return text
