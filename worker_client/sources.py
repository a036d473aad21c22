"""Where `jobworker run` gets its jobs and reports them: the JSON API
(leases renewed by heartbeats that carry the running jobs' output tails) or
the classic protocol."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .client import Client, Job
from .classic import ClassicClient
from .resources import host_sample

if TYPE_CHECKING:
    from .runner import RunOptions

log = logging.getLogger(__name__)

BEAT_MAX = 10.0  # seconds between heartbeats at most while jobs run (fresh log tails)


@dataclass
class Orphans:
    """Jobs at the stage a worker's jobs run in, held by lost workers (or
    overstaying): ``count`` of them, coming back to stage ``back_to`` once
    their lifetime (``lifetime`` seconds, None if the stage has none or the
    board does not requeue) has passed."""
    count: int
    back_to: int
    lifetime: float | None


class Source(Protocol):
    def claim(self, n: int, wait: float = 0.0) -> list[Job]: ...
    def can_wait(self) -> bool: ...
    def orphans(self) -> Orphans: ...
    def held_back(self) -> int: ...
    def done(self, job: Job, log_tail: str, result: Any = None) -> None: ...
    def failed(self, job: Job, error: str, exit_code: int | None,
               log_tail: str) -> str | None: ...
    def release(self, jobs: list[Job]) -> None: ...
    def heartbeat(self, samples: dict[int, dict[str, Any]], logs: dict[int, str],
                  notes: dict[int, list[dict[str, str]]] | None = None) -> set[int]: ...
    def goodbye(self) -> None: ...
    heartbeat_every: float


class ApiSource:
    def __init__(self, client: Client, opts: RunOptions) -> None:
        self.client = client
        self.opts = opts
        lease = client.lease_seconds(opts.stage)
        self.heartbeat_every = min(BEAT_MAX, max(0.5, lease / 4)) if lease else BEAT_MAX

    def claim(self, n: int, wait: float = 0.0) -> list[Job]:
        return self.client.claim(self.opts.stage, n, self.opts.to_stage, wait=wait)

    def can_wait(self) -> bool:
        return self.client.can_wait

    def orphans(self) -> Orphans:
        running = self.opts.stage + 1 if self.opts.to_stage is None else self.opts.to_stage
        s = self.client.status()
        count = int(s.get("orphaned", {}).get(str(running), 0))
        minutes = next((st["lifetime"] for st in s.get("stages", ()) if st["stage"] == running),
                       0)
        requeued = s.get("auto_requeue", True)
        # the sweeper sends an overstaying job back one stage
        return Orphans(count, running - 1, minutes * 60.0 if minutes and requeued else None)

    def held_back(self) -> int:
        """Jobs not claimable yet that will be: blocked behind upstream jobs
        that are still waiting or running, or waiting at this stage while
        the board's running cap is full."""
        s = self.client.status()
        progress = s.get("progress", {})
        moving = int(progress.get("running", 0)) + int(progress.get("waiting", 0))
        blocked = int(s.get("blocked", 0)) if moving else 0
        here = int(s.get("counts", {}).get(str(self.opts.stage), 0))
        return blocked + (here if s.get("max_running") is not None else 0)

    def done(self, job: Job, log_tail: str, result: Any = None) -> None:
        to = None if self.opts.to_stage is None else self.opts.to_stage + 1
        self.client.advance(job, to_stage=to, result=result, log_tail=log_tail or None)

    def failed(self, job: Job, error: str, exit_code: int | None, log_tail: str) -> str | None:
        """The server's verdict: "requeued", "failed" (for good), "cancelled"
        (None: a retried report whose first try had gone through)."""
        return self.client.fail(job, error, exit_code=exit_code, log_tail=log_tail)

    def release(self, jobs: list[Job]) -> None:
        self.client.release(jobs)

    live_logs = True  # heartbeats carry the output since the last one (runner._unsent)

    def heartbeat(self, samples: dict[int, dict[str, Any]], logs: dict[int, str],
                  notes: dict[int, list[dict[str, str]]] | None = None,
                  chunks: dict[int, dict[str, Any]] | None = None) -> set[int]:
        answer = self.client.heartbeat(samples=samples, resources=host_sample(), logs=logs,
                                       notes=notes, chunks=chunks)
        return set(answer["cancelled"]) | set(answer["lost"])

    def goodbye(self) -> None:
        self.client.goodbye(resources=host_sample())


class ClassicSource:
    """The same loop over the classic protocol (no heartbeats: a job's
    lifetime counts from its claim; a failed job is left for the sweeper,
    which requeues it and counts the attempt)."""

    heartbeat_every = 30.0

    def __init__(self, client: ClassicClient, opts: RunOptions) -> None:
        self.client = client
        self.opts = opts
        self._lock = threading.Lock()

    def orphans(self) -> Orphans:
        return Orphans(0, self.opts.stage, None)  # the classic protocol does not know workers

    def held_back(self) -> int:
        return 0  # nor dependencies or caps

    def can_wait(self) -> bool:
        return False  # the classic protocol answers "nada" at once: the runner polls

    def claim(self, n: int, wait: float = 0.0) -> list[Job]:
        got = []
        for _ in range(n):
            with self._lock:
                info = self.client.ask_for_job(self.opts.stage, self.opts.to_stage)
            if info == "nada":
                break
            got.append(Job(str(info["jobid"]), info["jobcmd"], info["jobstage"],
                           attempt_id=int(info["jobid"]) if str(info["jobid"]).isdigit() else 0))
        return got

    def done(self, job: Job, log_tail: str, result: Any = None) -> None:
        running = self.opts.stage + 1 if self.opts.to_stage is None else self.opts.to_stage
        with self._lock:
            self.client.update_job(job.key, running + 1)

    def failed(self, job: Job, error: str, exit_code: int | None, log_tail: str) -> str | None:
        log.warning("job %s failed (%s); left for the sweeper to requeue", job.key, error[-200:])
        return None  # the classic protocol cannot tell whether this failure is final

    def release(self, jobs: list[Job]) -> None:
        with self._lock:
            for j in jobs:
                self.client.update_job(j.key, self.opts.stage)

    def heartbeat(self, samples: dict[int, dict[str, Any]], logs: dict[int, str],
                  notes: dict[int, list[dict[str, str]]] | None = None) -> set[int]:
        return set()  # the classic protocol has no heartbeat: notes and results are lost

    def goodbye(self) -> None:
        pass
