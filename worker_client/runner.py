"""The executor loop: claim, run a command per job, heartbeat, report.

Runs up to ``parallel`` commands at once.  Exit 0 advances the job; a
non-zero exit or a timeout fails it with the tail of stderr.  SIGTERM or
SIGINT: stop claiming and let running jobs finish; a second signal kills
them and gives their jobs back.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from .client import Client, Job
from .classic import ClassicClient
from .resources import ProcessSampler, host_sample

log = logging.getLogger(__name__)

TAIL = 16_000


@dataclass
class RunOptions:
    stage: int
    command: Sequence[str]
    to_stage: int | None = None
    parallel: int = 1
    batch: int = 1
    continuous: bool = False
    max_jobs: int | None = None
    timeout: float | None = None
    poll_max: float = 30.0


class Source(Protocol):
    def claim(self, n: int) -> list[Job]: ...
    def done(self, job: Job, log_tail: str) -> None: ...
    def failed(self, job: Job, error: str, exit_code: int | None, log_tail: str) -> None: ...
    def release(self, jobs: list[Job]) -> None: ...
    def heartbeat(self, samples: dict[int, dict[str, Any]]) -> set[int]: ...
    def goodbye(self) -> None: ...
    heartbeat_every: float


class ApiSource:
    def __init__(self, client: Client, opts: RunOptions) -> None:
        self.client = client
        self.opts = opts
        lease = client.lease_seconds(opts.stage)
        self.heartbeat_every = min(30.0, max(0.5, lease / 4)) if lease else 30.0

    def claim(self, n: int) -> list[Job]:
        return self.client.claim(self.opts.stage, n, self.opts.to_stage)

    def done(self, job: Job, log_tail: str) -> None:
        to = None if self.opts.to_stage is None else self.opts.to_stage + 1
        self.client.advance(job, to_stage=to, log_tail=log_tail or None)

    def failed(self, job: Job, error: str, exit_code: int | None, log_tail: str) -> None:
        self.client.fail(job, error, exit_code=exit_code, log_tail=log_tail)

    def release(self, jobs: list[Job]) -> None:
        self.client.release(jobs)

    def heartbeat(self, samples: dict[int, dict[str, Any]]) -> set[int]:
        answer = self.client.heartbeat(samples=samples, resources=host_sample())
        return set(answer["cancelled"]) | set(answer["lost"])

    def goodbye(self) -> None:
        self.client.goodbye()


class ClassicSource:
    """The same loop over the classic protocol (no heartbeats: a job's
    lifetime counts from its claim; a failed job is left for the sweeper,
    which requeues it and counts the attempt)."""

    heartbeat_every = 30.0

    def __init__(self, client: ClassicClient, opts: RunOptions) -> None:
        self.client = client
        self.opts = opts
        self._lock = threading.Lock()

    def claim(self, n: int) -> list[Job]:
        got = []
        for _ in range(n):
            with self._lock:
                info = self.client.ask_for_job(self.opts.stage, self.opts.to_stage)
            if info == "nada":
                break
            got.append(Job(str(info["jobid"]), info["jobcmd"], info["jobstage"],
                           attempt_id=int(info["jobid"]) if str(info["jobid"]).isdigit() else 0))
        return got

    def done(self, job: Job, log_tail: str) -> None:
        running = self.opts.stage + 1 if self.opts.to_stage is None else self.opts.to_stage
        with self._lock:
            self.client.update_job(job.key, running + 1)

    def failed(self, job: Job, error: str, exit_code: int | None, log_tail: str) -> None:
        log.warning("job %s failed (%s); left for the sweeper to requeue", job.key, error[-200:])

    def release(self, jobs: list[Job]) -> None:
        with self._lock:
            for j in jobs:
                self.client.update_job(j.key, self.opts.stage)

    def heartbeat(self, samples: dict[int, dict[str, Any]]) -> set[int]:
        return set()

    def goodbye(self) -> None:
        pass


PLACEHOLDER = re.compile(r"\{(key|stage|attempt|payload)(?:\[([^\]{}]+)\])?\}")


def expand(args: Sequence[str], job: Job) -> list[str]:
    """Substitute {key}, {stage}, {attempt}, {payload} (as JSON) and
    {payload[name]} in ARGS; other braces (shell syntax) are left alone."""

    def one(m: re.Match[str]) -> str:
        name, field_name = m.group(1), m.group(2)
        if name == "key":
            return job.key
        if name == "stage":
            return str(job.stage)
        if name == "attempt":
            return str(job.attempt)
        if field_name is None:
            return json.dumps(job.payload)
        if not isinstance(job.payload, dict) or field_name not in job.payload:
            raise ValueError(f"the payload of job {job.key} has no field {field_name!r}")
        value = job.payload[field_name]
        return value if isinstance(value, str) else json.dumps(value)

    return [PLACEHOLDER.sub(one, a) for a in args]


@dataclass
class _Running:
    job: Job
    proc: subprocess.Popen | None = None
    sampler: ProcessSampler | None = None
    cancelled: bool = False
    thread: threading.Thread | None = None


@dataclass
class Stats:
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)


class Runner:
    def __init__(self, source: Source, opts: RunOptions, tty: bool | None = None) -> None:
        self.source = source
        self.opts = opts
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.stats = Stats()
        self.running: dict[int, _Running] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.stopping = False
        self.killing = False
        self.claimed = 0

    # -------------------------------------------------------------- signals

    def install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if not self.stopping:
            self.stopping = True
            log.info("signal %s: no new jobs; waiting for %d running (again to stop them)",
                     signum, len(self.running))
        else:
            self.killing = True
            log.info("signal %s again: stopping running jobs and giving them back", signum)
        self._wake.set()

    # ----------------------------------------------------------------- loop

    def run(self) -> Stats:
        idle = 1.0
        next_beat = time.monotonic() + self.source.heartbeat_every
        next_show = 0.0
        while True:
            if self.killing:
                self._kill_all()
            free = self.opts.parallel - len(self.running)
            if self.opts.max_jobs is not None:
                free = min(free, self.opts.max_jobs - self.claimed)
            if not self.stopping and free > 0:
                jobs = self.source.claim(min(free, self.opts.batch))
                for job in jobs:
                    self._start(job)
                self.claimed += len(jobs)
                if jobs:
                    idle = 1.0
                    continue
                if not self.running:
                    if not self.opts.continuous:
                        break
                    self._wake.wait(idle)
                    self._wake.clear()
                    idle = min(idle * 2, self.opts.poll_max)
                    continue
            elif not self.running:
                break
            self._wake.wait(0.5)
            self._wake.clear()
            now = time.monotonic()
            if now >= next_beat and self.running:
                self._heartbeat()
                next_beat = now + self.source.heartbeat_every
            if now >= next_show:
                self._show()
                next_show = now + 1.0
        self._show(final=True)
        try:
            self.source.goodbye()
        except Exception as exc:
            log.warning("could not say goodbye to the server: %s", exc)
        return self.stats

    def _heartbeat(self) -> None:
        with self._lock:
            samples = {r.job.attempt_id: r.sampler.sample() for r in self.running.values()
                       if r.sampler is not None}
        try:
            stop = self.source.heartbeat(samples)
        except Exception as exc:
            log.warning("heartbeat failed: %s", exc)
            return
        for attempt_id in stop:
            r = self.running.get(attempt_id)
            if r is not None and r.proc is not None:
                log.info("job %s was cancelled or lost: stopping it", r.job.key)
                r.cancelled = True
                _terminate(r.proc)

    def _kill_all(self) -> None:
        with self._lock:
            running = list(self.running.values())
        for r in running:
            r.cancelled = True
            if r.proc is not None:
                _terminate(r.proc)
        for r in running:
            if r.thread is not None:
                r.thread.join()
        self.killing = False

    def _start(self, job: Job) -> None:
        r = _Running(job)
        with self._lock:
            self.running[job.attempt_id] = r
        r.thread = threading.Thread(target=self._execute, args=(r,), daemon=True)
        r.thread.start()

    def _execute(self, r: _Running) -> None:
        job = r.job
        out: collections.deque[bytes] = collections.deque()
        err: collections.deque[bytes] = collections.deque()
        try:
            args = expand(self.opts.command, job)
            env = dict(os.environ, JOB_KEY=job.key, JOB_STAGE=str(job.stage),
                       JOB_PAYLOAD=json.dumps(job.payload), JOB_ATTEMPT=str(job.attempt))
            r.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, start_new_session=True)
            r.sampler = ProcessSampler(r.proc.pid)
            readers = [threading.Thread(target=_tail, args=(r.proc.stdout, out), daemon=True),
                       threading.Thread(target=_tail, args=(r.proc.stderr, err), daemon=True)]
            for t in readers:
                t.start()
            timed_out = False
            try:
                code = r.proc.wait(self.opts.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _terminate(r.proc)
                code = r.proc.wait()
            for t in readers:
                t.join()
            log_tail = _text(out, "stdout") + _text(err, "stderr")
            if r.cancelled:
                try:  # closes the attempt; a lost one is already closed (409)
                    self.source.release([job])
                except Exception as exc:
                    log.debug("release of job %s: %s", job.key, exc)
                log.info("job %s stopped", job.key)
            elif code == 0 and not timed_out:
                self.source.done(job, log_tail)
                self.stats.done += 1
                if not self.tty:
                    log.info("job %s done", job.key)
            else:
                why = (f"timed out after {self.opts.timeout:g} s" if timed_out
                       else f"exit code {code}")
                error = (_text(err, "") or why).strip()[-2000:]
                self.source.failed(job, f"{why}: {error}" if error != why else why,
                                   None if timed_out else code, log_tail)
                self.stats.failed += 1
                log.info("job %s failed: %s", job.key, why)
        except Exception as exc:  # a report that failed for good, a bad ARGS template...
            log.error("job %s: %s", job.key, exc)
            self.stats.failed += 1
            try:
                self.source.failed(job, str(exc), None, "")
            except Exception:
                log.exception("could not report job %s", job.key)
        finally:
            with self._lock:
                self.running.pop(job.attempt_id, None)
            self._wake.set()

    def _show(self, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self.stats.started, 1e-9)
        line = (f"done {self.stats.done}  failed {self.stats.failed}  running "
                f"{len(self.running)}/{self.opts.parallel}  "
                f"{self.stats.done / elapsed:.1f} jobs/s"
                + ("  (draining)" if self.stopping and not final else ""))
        if self.tty:
            sys.stderr.write("\r\033[K" + line + ("\n" if final else ""))
            sys.stderr.flush()
        elif final:
            log.info("%s", line)


def _terminate(proc: subprocess.Popen) -> None:
    """Stop a job's whole process group: TERM, then KILL after 5 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _tail(stream: Any, keep: collections.deque[bytes]) -> None:
    size = 0
    for chunk in iter(lambda: stream.read1(65536), b""):
        keep.append(chunk)
        size += len(chunk)
        while size > TAIL and len(keep) > 1:
            size -= len(keep.popleft())
    stream.close()


def _text(chunks: collections.deque[bytes], label: str) -> str:
    data = b"".join(chunks)[-TAIL:].decode("utf-8", errors="replace")
    if not data or not label:
        return data
    return f"--- {label} ---\n{data}"
