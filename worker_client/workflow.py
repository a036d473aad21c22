"""The Python workflow builder: tasks with upstream tasks, pushed to a board
as jobs with ``after`` (in the spirit of jobmon's Workflow and BashTask).

    wf = Workflow("pipeline")                       # JOBSERVER_URL / _TOKEN
    prep = wf.add_task(BashTask("prep", "python prep.py > data.csv"))
    sims = wf.add_tasks(BashTask(f"sim{i}", f"python sim.py {i}", upstream=[prep])
                        for i in range(10))
    wf.add_task(BashTask("agg", "python agg.py", upstream=sims))
    wf.push()                                       # again later: the resume
    failed = wf.wait()                              # a progress bar; [] when all done

A task is a job of the board keyed by its ``key``; its upstream tasks are the
job's ``after`` keys, so the server claims it only once they are all done.
`jobworker run --stage 0` on any number of hosts runs the tasks' commands
(``BashTask``: ``["bash", "-c", command]``, so pipes, redirections, globs and
``&&`` work as in a terminal; ``CommandTask``: an argv run without a shell).

Pushing is idempotent: tasks already on the board are left as they are
(done stays done, failed stays failed until retried), new ones are added.
That is the resume: run the same script again after fixing what failed, or
call ``retry_failed()``.  A task that differs from what the board holds for
its key is reported (``changed``), and refused with ``push(strict=True)``.
"""
from __future__ import annotations

import collections
import logging
import os
import sys
import time
from typing import Any, Iterable, Sequence

from .client import Client, Unavailable

log = logging.getLogger(__name__)

__all__ = ["BashTask", "CommandTask", "Task", "Workflow"]


class Task:
    """One job of a workflow.  ``upstream``: tasks (or keys of jobs on the
    board) that must be done first.  ``max_attempts``: attempts of this job
    at each stage (default: the board's); ``priority``: claims take higher
    first (default 0)."""

    def __init__(self, key: str, payload: Any = None, upstream: Iterable[Task | str] = (),
                 max_attempts: int | None = None, priority: int | None = None,
                 stage: int = 0) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"a task's key must be a non-empty string, got {key!r}")
        self.key = key
        self.payload = payload
        self.upstream: list[Task | str] = list(upstream)
        self.max_attempts = max_attempts
        self.priority = priority
        self.stage = stage
        self.state: str | None = None  # known after wait(): done, failed, blocked...
        self.error: str | None = None  # the job's error, for a failed task

    @property
    def upstream_keys(self) -> list[str]:
        return list(dict.fromkeys(t.key if isinstance(t, Task) else str(t)
                                  for t in self.upstream))

    def job(self) -> dict[str, Any]:
        """This task as a pushed job."""
        job: dict[str, Any] = {"key": self.key, "payload": self.payload}
        if self.stage:
            job["stage"] = self.stage
        if self.upstream:
            job["after"] = self.upstream_keys
        if self.priority is not None:
            job["priority"] = self.priority
        if self.max_attempts is not None:
            job["max_attempts"] = self.max_attempts
        return job

    def __repr__(self) -> str:
        state = f" {self.state}" if self.state else ""
        return f"<{type(self).__name__} {self.key}{state}>"


class CommandTask(Task):
    """A task that runs ``argv`` (no shell), in ``cwd`` if given (it must
    exist where the worker runs), with ``env`` set over the worker's
    environment: a command job, as `jobworker submit` pushes."""

    def __init__(self, key: str, argv: Sequence[str], upstream: Iterable[Task | str] = (),
                 max_attempts: int | None = None, priority: int | None = None,
                 cwd: str | None = None, env: dict[str, str] | None = None,
                 stage: int = 0) -> None:
        argv = list(argv)
        if not argv or not all(isinstance(a, str) for a in argv):
            raise ValueError(f"task {key}: argv must be a non-empty list of strings")
        payload: dict[str, Any] = {"command": argv}
        if cwd is not None:
            payload["cwd"] = str(cwd)
        if env:
            payload["env"] = {str(k): str(v) for k, v in env.items()}
        super().__init__(key, payload, upstream, max_attempts, priority, stage)


class BashTask(CommandTask):
    """A task that runs ``command`` with ``bash -c`` on the worker (pipes,
    redirections, globs, ``&&`` and variables work as in a terminal)."""

    def __init__(self, key: str, command: str, upstream: Iterable[Task | str] = (),
                 max_attempts: int | None = None, priority: int | None = None,
                 cwd: str | None = None, env: dict[str, str] | None = None,
                 stage: int = 0) -> None:
        if not isinstance(command, str) or not command.strip():
            raise ValueError(f"task {key}: the command must be a non-empty string")
        self.command = command
        super().__init__(key, ["bash", "-c", command], upstream, max_attempts, priority, cwd,
                         env, stage)


class Workflow:
    """Tasks for one board.  ``board``, ``url`` and ``token`` fall back to
    JOBSERVER_BOARD, JOBSERVER_URL and JOBSERVER_TOKEN, as `jobworker` does.
    The server is given ``retry_for`` seconds to answer (a restart is ridden
    out; a wrong address fails within that)."""

    def __init__(self, board: str | None = None, url: str | None = None,
                 token: str | None = None, retry_for: float = 10.0) -> None:
        board = board or os.environ.get("JOBSERVER_BOARD")
        url = url or os.environ.get("JOBSERVER_URL")
        token = token or os.environ.get("JOBSERVER_TOKEN")
        missing = [n for n, v in (("board/JOBSERVER_BOARD", board), ("url/JOBSERVER_URL", url),
                                  ("token/JOBSERVER_TOKEN", token)) if not v]
        if missing:
            raise ValueError("Workflow: missing " + ", ".join(missing))
        self.client = Client(url, board, token, retry_for=retry_for,  # type: ignore[arg-type]
                             connect_timeout=min(10.0, retry_for))
        self.tasks: dict[str, Task] = {}

    @property
    def board(self) -> str:
        return self.client.board

    def add_task(self, task: Task) -> Task:
        """Add a task (its upstream tasks are added too); returns it.  Adding
        the same task twice is harmless, another task with its key is not."""
        todo = collections.deque([task])
        while todo:
            t = todo.popleft()
            known = self.tasks.get(t.key)
            if known is t:
                continue
            if known is not None and known.job() != t.job():
                raise ValueError(f"two different tasks with the key {t.key!r}")
            if known is None:
                self.tasks[t.key] = t
            todo.extend(u for u in t.upstream if isinstance(u, Task))
        return task

    def add_tasks(self, tasks: Iterable[Task]) -> list[Task]:
        """Add several tasks; returns them as a list (handy as upstream)."""
        return [self.add_task(t) for t in tasks]

    def ordered(self) -> list[Task]:
        """The tasks, each after its upstream tasks (the order they are
        pushed in: a job's ``after`` keys must be on the board or earlier in
        its push).  A cycle raises ValueError naming its tasks."""
        waiting = {k: sum(1 for u in t.upstream_keys if u in self.tasks)
                   for k, t in self.tasks.items()}
        downstream: dict[str, list[str]] = {}
        for k, t in self.tasks.items():
            for u in t.upstream_keys:
                if u in self.tasks:
                    downstream.setdefault(u, []).append(k)
        ready = [k for k, n in waiting.items() if n == 0]
        order: list[str] = []
        while ready:
            k = ready.pop()
            order.append(k)
            for d in downstream.get(k, ()):
                waiting[d] -= 1
                if waiting[d] == 0:
                    ready.append(d)
        if len(order) < len(self.tasks):
            stuck = sorted(k for k, n in waiting.items() if n)
            raise ValueError(f"the workflow has a cycle among {len(stuck)} task(s): "
                             + ", ".join(stuck[:20]) + (", ..." if len(stuck) > 20 else ""))
        # by depth (upstream first), then in the order the tasks were added
        depth: dict[str, int] = {}
        for k in order:
            depth[k] = 1 + max((depth[u] for u in self.tasks[k].upstream_keys if u in depth),
                               default=-1)
        added = {k: i for i, k in enumerate(self.tasks)}
        return sorted(self.tasks.values(), key=lambda t: (depth[t.key], added[t.key]))

    def push(self, strict: bool = False, chunk: int = 50_000) -> dict[str, Any]:
        """Push every task (upstream first); idempotent by key, so pushing
        again is the resume.  Returns the server's answer: ``created``,
        ``existing``, ``changed`` (tasks on the board whose payload or
        upstream keys differ from this workflow's; left as they are, and
        logged as a warning) and ``changed_keys`` (the first 50).
        ``strict``: refuse such a push (ApiError 409) instead; the workflow
        then goes in one request, so that a refusal writes none of it."""
        if strict:
            chunk = max(chunk, len(self.tasks))
        got = self.client.push((t.job() for t in self.ordered()), chunk=chunk, strict=strict)
        if got["changed"]:
            log.warning("%d task(s) differ from what board %s holds for their keys (left as "
                        "they are): %s", got["changed"], self.board,
                        ", ".join(map(str, got["changed_keys"][:10])))
        return got

    def wait(self, interval: float = 2.0, progress: bool = True,
             timeout: float | None = None) -> list[Task]:
        """Poll the board every ``interval`` seconds until nothing is waiting
        or running (a progress bar on stderr if ``progress``).  It follows
        the whole board: give a workflow a board of its own, or this waits
        for the other jobs on it too.  Returns this
        workflow's tasks that did not get done: failed, cancelled, and blocked
        behind those (each with ``state`` and, if failed, ``error``); an empty
        list when all went well.  ``timeout`` seconds: TimeoutError.  A
        server unreachable on the first look raises Unavailable; later it is
        waited out."""
        from .show import counts_text

        started = time.monotonic()
        bar: Any = None
        last_done = 0
        try:
            seen = False
            while True:
                try:
                    status = self.client.status()
                    seen = True
                except Unavailable as exc:
                    if not seen:
                        raise
                    log.warning("board %s: %s (still trying)", self.board, exc)
                    time.sleep(interval)
                    continue
                p = status["progress"]
                total, done = p.get("total", 0), p.get("done", 0)
                if progress:
                    if bar is None:
                        import click

                        bar = click.progressbar(length=max(total, 1), label=self.board,
                                                file=sys.stderr, show_pos=True,
                                                item_show_func=lambda _: counts_text(p))
                        bar.__enter__()
                    bar.length = max(total, 1)
                    bar.update(done - last_done, current_item=True)
                    last_done = done
                if _settled(status):
                    break
                if timeout is not None and time.monotonic() - started > timeout:
                    raise TimeoutError(f"board {self.board}: not finished after {timeout:g} s "
                                       f"({counts_text(p)})")
                time.sleep(interval)
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
        return self._unfinished()

    def _unfinished(self) -> list[Task]:
        out = []
        for state in ("failed", "cancelled", "blocked"):
            for job in self.client.list_jobs(state=state):
                task = self.tasks.get(job["key"])
                if task is not None:
                    task.state, task.error = state, job.get("error")
                    out.append(task)
        return out

    def retry_failed(self) -> int:
        """Retry this workflow's failed tasks (fresh attempts, at the stage
        where they last waited); their blocked downstream tasks follow once
        they are done.  Returns how many were retried."""
        keys = [j["key"] for j in self.client.list_jobs(state="failed") if j["key"] in self.tasks]
        return self.client.retry(keys=keys) if keys else 0

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Workflow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _settled(status: dict[str, Any]) -> bool:
    """Nothing waiting to run or running: what is left (failed, cancelled,
    blocked behind them) cannot move by itself.  (The board's ``waiting``
    leaves out blocked jobs, which wait for upstream jobs.)"""
    p = status["progress"]
    return not p.get("waiting") and not p.get("running")
