"""The executor loop: claim, run a command per job, heartbeat, report.

The command is the one given (``RunOptions.command``, with the job
substituted in it) or, without one, each job's own: its payload
``{"command": [argv...], "cwd": dir, "env": {NAME: value}}`` (a command job,
as `jobworker submit` and the workflow builder push them).  Runs up to
``parallel`` commands at once.  Exit 0 advances the job; a
non-zero exit or a timeout fails it with the tail of stderr.  Output lines
``@event=[NAME:message]``, ``@log=[message]`` and ``@var=[name:value]``
travel with the heartbeats as the job's notes (:mod:`.notes`); the last ones
are sent before the job is reported, and on success the vars are the
fields of its result.  The output's
tail travels with the heartbeats while a job runs (so a page shows it live)
and with the report at the end, and so does all of it, in chunks: each
heartbeat carries what was printed since the last one (live logs, see
:meth:`.output.Capture.unsent`), the last one before the report the rest;
``output_dir`` keeps it all in files, ``tee`` shows it on the terminal.  With nothing left to claim (and not
``continuous``), it waits a bounded time for jobs held by lost workers to
come back before it exits; with ``idle_exit`` it keeps looking for work
(as ``continuous``) and leaves after that many seconds without any (a
worker in a batch allocation frees its node).  SIGTERM or SIGINT: stop
claiming and let running jobs finish; a second signal kills them and gives
their jobs back.  A command that dies by a signal after its worker was told
to stop (a batch scheduler ending the allocation signals every process in
it) is given back too: the job was not at fault.
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .client import CLAIM_WAIT, Job
from .notes import PER_BEAT, Notes
from .output import Capture, file_stem
from .resources import ProcessSampler
from .sources import Source
from .terminal import StatusLine

log = logging.getLogger(__name__)


class _StopWaiting(Exception):
    """A signal ended a held claim (nothing was running)."""


@dataclass
class RunOptions:
    stage: int
    command: Sequence[str]  # empty: each job's payload names its command
    to_stage: int | None = None
    parallel: int = 1
    batch: int = 1
    continuous: bool = False
    max_jobs: int | None = None
    timeout: float | None = None
    poll_max: float = 2.0  # an idle --continuous worker looks for new jobs this often
    # Nothing left to claim: how long to wait for jobs held by lost workers
    # to come back (None: their stage's lifetime plus a minute, at most
    # ORPHANS_WAIT_MAX; 0: do not wait).
    wait_orphans: float | None = None
    output_dir: Path | None = None
    tee: bool = False
    # Seconds without work after which the worker leaves (None: leave as
    # soon as nothing is left, or never with ``continuous``).
    idle_exit: float | None = None


ORPHANS_WAIT_MAX = 1800.0  # seconds: the default wait for jobs of lost workers, at most
ORPHANS_RECHECK = 10.0  # seconds between two looks at the board while waiting (claims: 2 s)
SIGNAL_GRACE = 1.0  # seconds a command killed by a signal waits for its worker's own signal

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


class BadPayload(ValueError):
    """A command job whose command cannot be run as given."""


class NoCommand(BadPayload):
    """A job without a command of its own reached a worker that runs jobs'
    own commands: the worker was started wrong, not the job."""


def payload_command(job: Job) -> tuple[list[str], str | None, dict[str, str]]:
    """A command job's argv, working directory and environment, from its
    payload ``{"command": [argv...], "cwd"?: str, "env"?: {str: str}}``."""
    payload = job.payload
    if not isinstance(payload, dict) or "command" not in payload:
        raise NoCommand(
            f"job {job.key} has no command of its own: its payload has no \"command\" "
            f"(a list: argv, as `jobworker submit` pushes); give this worker a command "
            f"(`jobworker run --stage S -- COMMAND ...`) for jobs whose payload is data")
    argv = payload["command"]
    if (not isinstance(argv, list) or not argv
            or not all(isinstance(a, str) for a in argv) or not argv[0]):
        raise BadPayload(f"job {job.key}: its payload's \"command\" must be a non-empty "
                         f"list of strings (argv), got {json.dumps(argv)[:200]}")
    cwd = payload.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise BadPayload(f"job {job.key}: its payload's \"cwd\" must be a string")
    env = payload.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) and k and "=" not in k
                                            and isinstance(v, str) for k, v in env.items()):
        raise BadPayload(f"job {job.key}: its payload's \"env\" must map variable names "
                         f"to strings")
    return list(argv), cwd, dict(env)


@dataclass
class _Running:
    job: Job
    proc: subprocess.Popen | None = None
    sampler: ProcessSampler | None = None
    cancelled: bool = False
    thread: threading.Thread | None = None
    capture: Capture | None = None
    sent: int = 0  # the capture's version last sent with a heartbeat
    notes: Notes = field(default_factory=Notes)


@dataclass
class Stats:
    """What a run did.  A failed *attempt* is one command that failed; the
    server then retries the job (``retried``) or fails it for good
    (``failed_for_good``): only the latter is a failed job."""
    done: int = 0
    failed_attempts: int = 0
    failed_for_good: int = 0
    retried: int = 0
    cancelled: int = 0
    started: float = field(default_factory=time.monotonic)
    stopped_by: str | None = None  # why the worker stopped early (a job it cannot run)

    def count_failure(self, outcome: str | None) -> None:
        self.failed_attempts += 1
        if outcome == "failed":
            self.failed_for_good += 1
        elif outcome == "requeued":
            self.retried += 1
        elif outcome == "cancelled":
            self.cancelled += 1

    def summary(self, classic: bool = False) -> str:
        """e.g. "done 176, failed for good 24 (38 failed attempts, 14 retried)"."""
        if classic:  # the sweeper decides later whether a failure was final
            return (f"done {self.done}, failed attempts {self.failed_attempts}"
                    + (" (left to the sweeper to retry or fail)" if self.failed_attempts
                       else ""))
        text = f"done {self.done}, failed for good {self.failed_for_good}"
        if self.failed_attempts:
            unknown = (self.failed_attempts - self.failed_for_good - self.retried
                       - self.cancelled)
            text += (f" ({self.failed_attempts} failed attempt"
                     f"{'' if self.failed_attempts == 1 else 's'}, {self.retried} retried"
                     + (f", {self.cancelled} cancelled meanwhile" if self.cancelled else "")
                     + (f", {unknown} unknown" if unknown else "") + ")")
        return text


class Runner:
    def __init__(self, source: Source, opts: RunOptions, tty: bool | None = None,
                 classic: bool = False) -> None:
        self.source = source
        self.opts = opts
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.classic = classic
        self.status = StatusLine(sys.stderr)
        self.stats = Stats()
        self.running: dict[int, _Running] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._signalled = threading.Event()  # set by the first SIGTERM/SIGINT
        self.stopping = False
        self.killing = False
        self.claimed = 0
        self._orphans_until: float | None = None  # waiting for lost workers' jobs until then
        self._orphans_seen = 0.0  # when the board was last asked about them
        self._held_seen = 0.0  # when jobs held back (blocked, capped) were last seen
        self._idle_since: float | None = None  # nothing running nor claimed since then
        self._holding = False  # a claim the server holds until work comes is under way
        # one heartbeat at a time: a job's last notes must not overtake earlier ones
        self._beat_lock = threading.Lock()

    # -------------------------------------------------------------- signals

    def install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._signalled.set()
        if self._holding and not self.running:
            # an idle worker whose claim the server holds: leave now (a job
            # the server gives that claim after all comes back by its lease)
            self.stopping = True
            log.info("signal %s: stopping (no job was running)", signum)
            raise _StopWaiting
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
        if self.opts.output_dir is not None:
            self.opts.output_dir.mkdir(parents=True, exist_ok=True)
        if self.tty:
            self.status.capture_logging()
        try:
            return self._loop()
        finally:
            self.status.release_logging()

    def _loop(self) -> Stats:
        idle = min(0.5, self.opts.poll_max)
        waiting = False  # the next claim waits for work (an idle --continuous worker)
        next_beat = time.monotonic() + self.source.heartbeat_every
        next_show = 0.0
        while True:
            if self.killing:
                self._kill_all()
            free = self.opts.parallel - len(self.running)
            if self.opts.max_jobs is not None:
                free = min(free, self.opts.max_jobs - self.claimed)
            if not self.stopping and free > 0:
                # an idle --continuous worker's claim is held by the server
                # until work comes (nothing runs: no heartbeat is due meanwhile)
                wait = CLAIM_WAIT if waiting and not self.running else 0.0
                if wait:
                    try:
                        self._holding = True
                        jobs = self.source.claim(min(free, self.opts.batch), wait=wait)
                    except _StopWaiting:  # a person stops an idle worker: at once
                        break
                    finally:
                        self._holding = False
                else:
                    jobs = self.source.claim(min(free, self.opts.batch))
                if jobs and self.stopping:  # a signal came while the claim was held
                    self.source.release(jobs)
                    jobs = []
                for job in jobs:
                    self._start(job)
                self.claimed += len(jobs)
                if jobs:
                    idle = min(0.5, self.opts.poll_max)
                    self._orphans_until = None
                    self._idle_since = None
                    continue
                if not self.running:
                    if self.opts.idle_exit is not None:
                        if self._idle_too_long():
                            break
                        self._wake.wait(idle)
                        self._wake.clear()
                        idle = min(idle * 2, self.opts.poll_max)
                        continue
                    if not self.opts.continuous:
                        waited = self._orphans_until is not None
                        if self._held_back():
                            self._wake.wait(self.opts.poll_max)
                            self._wake.clear()
                            continue
                        if self._orphans_coming_back():
                            self._wake.wait(self.opts.poll_max)
                            self._wake.clear()
                            continue
                        if waited:  # they may have come back since the last claim
                            self._orphans_until = None
                            jobs = self.source.claim(min(free, self.opts.batch))
                            for job in jobs:
                                self._start(job)
                            self.claimed += len(jobs)
                            if jobs:
                                continue
                        break
                    if getattr(self.source, "can_wait", lambda: False)():
                        waiting = True
                        continue
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

    def _idle_too_long(self) -> bool:
        """--idle-exit: whether the worker has been without work for that
        long (says so in one line when it leaves)."""
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
        if now - self._idle_since < (self.opts.idle_exit or 0.0):
            return False
        log.info("no work for %.0f s: leaving (--idle-exit)", now - self._idle_since)
        return True

    def _held_back(self) -> bool:
        """Nothing to claim and nothing running, but jobs will be claimable
        later: blocked behind upstream jobs still on their way, or held by
        the board's running cap.  Waits as long as the board moves; says so
        in one line.  (Blocked jobs behind failed ones only: not waiting.)"""
        now = time.monotonic()
        if self._held_seen and now - self._held_seen < ORPHANS_RECHECK:
            return True  # a fleet of waiting workers must not poll the status too
        try:
            held = self.source.held_back()
        except Exception as exc:
            log.warning("could not ask the server for blocked jobs: %s", exc)
            held = 0
        if not held:
            self._held_seen = 0.0
            return False
        if not self._held_seen:
            log.info("%d job%s not claimable yet (blocked behind jobs still on their way, or "
                     "the board's running cap is full): waiting", held, "" if held == 1 else "s")
        self._held_seen = now
        return True

    def _orphans_coming_back(self) -> bool:
        """Nothing to claim and nothing running: whether to wait (and claim
        again) because jobs of this stage are held by lost or overstaying
        workers and will come back once their lifetime has passed.  Says so
        in one line; bounded by --wait-orphans."""
        if self.opts.wait_orphans == 0:
            return False
        now = time.monotonic()
        if self._orphans_until is not None:
            if now >= self._orphans_until:
                log.info("stopped waiting for jobs held by lost workers (--wait-orphans)")
                self._orphans_until = None
                return False
            if now - self._orphans_seen < ORPHANS_RECHECK:
                return True  # a fleet of waiting workers must not poll the status too
        self._orphans_seen = now
        try:
            orphans = self.source.orphans()
        except Exception as exc:
            log.warning("could not ask the server for jobs held by lost workers: %s", exc)
            return False
        if orphans.count == 0:
            return False
        if self._orphans_until is None:
            many = f"{orphans.count} job{'' if orphans.count == 1 else 's'}"
            if orphans.lifetime is None or orphans.back_to != self.opts.stage:
                log.info("%s held by lost workers will not come back to stage %d by themselves "
                         "(their stage has no lifetime, or the board does not requeue): not "
                         "waiting", many, self.opts.stage)
                return False
            bound = self.opts.wait_orphans
            if bound is None:
                bound = min(orphans.lifetime + 60.0, ORPHANS_WAIT_MAX)
            self._orphans_until = now + bound
            log.info("%s held by lost workers will come back to stage %d: waiting up to %.0f s",
                     many, self.opts.stage, bound)
        return True

    def _heartbeat(self) -> None:
        with self._beat_lock:
            self._beat_locked()

    def _beat_locked(self) -> None:
        with self._lock:
            running = list(self.running.values())
        samples = {r.job.attempt_id: r.sampler.sample() for r in running
                   if r.sampler is not None}
        logs, versions = {}, {}
        for r in running:  # only the tails that changed since the last beat
            if r.capture is not None and r.capture.version != r.sent:
                versions[r.job.attempt_id] = (r, r.capture.version)
                logs[r.job.attempt_id] = r.capture.tail()
        notes, room = {}, PER_BEAT
        for r in running:
            if room and r.notes:
                notes[r.job.attempt_id] = got = r.notes.take(room)
                room -= len(got)
        chunks = self._unsent(running)
        try:
            if chunks:
                stop = self.source.heartbeat(samples, logs, notes, chunks=chunks)
            elif notes:
                stop = self.source.heartbeat(samples, logs, notes)
            else:  # sources of other kinds (and tests') may not know notes
                stop = self.source.heartbeat(samples, logs)
        except Exception as exc:
            log.warning("heartbeat failed: %s", exc)
            if notes:
                log.warning("%d notes of running jobs were not recorded",
                            sum(map(len, notes.values())))
            return
        for r, version in versions.values():
            r.sent = version
        self._acknowledge(running, chunks)
        for attempt_id in stop:
            r = self.running.get(attempt_id)
            if r is not None and r.proc is not None:
                log.info("job %s was cancelled or lost: stopping it", r.job.key)
                r.cancelled = True
                _terminate(r.proc)

    def _unsent(self, running: list[_Running]) -> dict[int, dict[str, Any]]:
        """The output of running jobs the server has not kept yet (live
        logs), if the source carries it."""
        if not getattr(self.source, "live_logs", False):
            return {}
        chunks = {}
        for r in running:
            if r.capture is not None:
                got = r.capture.unsent()
                if got:
                    chunks[r.job.attempt_id] = got
        return chunks

    @staticmethod
    def _acknowledge(running: list[_Running], chunks: dict[int, dict[str, Any]]) -> None:
        for r in running:
            if r.capture is not None and r.job.attempt_id in chunks:
                r.capture.acknowledge(chunks[r.job.attempt_id])

    def _send_notes(self, r: _Running) -> None:
        """A finished job's notes and output not sent yet, sent before it
        is reported (while its attempt is still open)."""
        with self._beat_lock:
            for _ in range(100):  # a few beats: at most LIVE_HELD bytes are held
                chunks = self._unsent([r])
                if not r.notes and not chunks:
                    return
                notes = r.notes.take(PER_BEAT)
                try:
                    if chunks:
                        self.source.heartbeat({}, {}, {r.job.attempt_id: notes} if notes
                                              else {}, chunks=chunks)
                    else:
                        self.source.heartbeat({}, {}, {r.job.attempt_id: notes})
                except Exception as exc:
                    log.warning("job %s: %d notes and its last output not recorded: %s",
                                r.job.key, len(notes), exc)
                    return
                self._acknowledge([r], chunks)

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
        try:
            if self.opts.command:
                args, cwd, own_env = expand(self.opts.command, job), None, {}
            else:
                args, cwd, own_env = payload_command(job)
            env = {**os.environ, **own_env, "JOB_KEY": job.key, "JOB_STAGE": str(job.stage),
                   "JOB_PAYLOAD": json.dumps(job.payload), "JOB_ATTEMPT": str(job.attempt)}
            if cwd is not None and not os.path.isdir(cwd):
                raise RuntimeError(f"its working directory {cwd} is not a directory on "
                                   f"{socket.gethostname()}")
            r.capture = capture = Capture(self.opts.output_dir,
                                          file_stem(job.key, job.stage, job.attempt),
                                          self._tee_for(job) if self.opts.tee else None,
                                          r.notes)
            try:
                r.proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, start_new_session=True)
            except OSError as exc:
                where = f" in {cwd}" if cwd else ""
                raise RuntimeError(f"cannot start {args[0]!r}{where}: "
                                   f"{exc.strerror or exc}") from None
            r.sampler = ProcessSampler(r.proc.pid)
            readers = [threading.Thread(target=capture.out.pump, args=(r.proc.stdout,),
                                        daemon=True),
                       threading.Thread(target=capture.err.pump, args=(r.proc.stderr,),
                                        daemon=True)]
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
            log_tail = capture.tail()
            self._send_notes(r)
            if code < 0 and not timed_out and not r.cancelled:
                # a scheduler ending the allocation signals the worker and its
                # commands at once; the command may die before the main thread
                # has run the worker's handler: give that handler a moment
                self._signalled.wait(SIGNAL_GRACE)
            if r.cancelled or (self.stopping and code < 0 and not timed_out):
                # cancelled, lost, or killed along with its stopping worker
                # (scancel, a time limit): given back, no attempt counted
                try:  # closes the attempt; a lost one is already closed (409)
                    self.source.release([job])
                except Exception as exc:
                    log.debug("release of job %s: %s", job.key, exc)
                log.info("job %s stopped%s", job.key, "" if r.cancelled else
                         f" by signal {-code} with its worker: given back")
            elif code == 0 and not timed_out:
                result = r.notes.result()
                if result is None:  # sources of other kinds (and tests') may not know results
                    self.source.done(job, log_tail)
                else:
                    self.source.done(job, log_tail, result)
                with self._lock:
                    self.stats.done += 1
                if not self.tty:
                    log.info("job %s done", job.key)
            else:
                why = (f"timed out after {self.opts.timeout:g} s" if timed_out
                       else f"exit code {code}")
                error = capture.err.text().strip()[-2000:] or why
                outcome = self.source.failed(job, f"{why}: {error}" if error != why else why,
                                             None if timed_out else code, log_tail)
                with self._lock:
                    self.stats.count_failure(outcome)
                log.info("job %s failed: %s%s", job.key, why,
                         {"failed": " (for good)", "requeued": " (will be retried)"}
                         .get(outcome or "", ""))
        except NoCommand as exc:  # this worker is the wrong one: give the job back, stop
            try:
                self.source.release([job])
            except Exception as release_error:
                log.warning("could not give job %s back: %s", job.key, release_error)
            with self._lock:
                if self.stats.stopped_by is None:
                    log.error("%s", exc)
                    self.stats.stopped_by = str(exc)
                self.stopping = True
        except Exception as exc:  # a report that failed for good, a bad ARGS template...
            log.error("job %s: %s", job.key, exc)
            outcome = None
            try:
                outcome = self.source.failed(job, str(exc), None, "")
            except Exception:
                log.exception("could not report job %s", job.key)
            with self._lock:
                self.stats.count_failure(outcome)
        finally:
            if r.capture is not None:
                r.capture.out.close()
                r.capture.err.close()
            with self._lock:
                self.running.pop(job.attempt_id, None)
            self._wake.set()

    def _tee_for(self, job: Job) -> Any:
        """Writes one line of the job's output to our stdout (its stdout) or
        stderr (its stderr), prefixed by the job key, above the status line."""
        def tee(stream: str, line: str) -> None:
            target = sys.stdout if stream == "stdout" else sys.stderr
            self.status.write_line(target, f"[{job.key}] {line}")
        return tee

    def _show(self, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self.stats.started, 1e-9)
        st = self.stats
        failed = (f"failed attempts {st.failed_attempts}" if self.classic else
                  f"failed for good {st.failed_for_good}"
                  + (f" (of {st.failed_attempts} failed attempts)" if st.failed_attempts else ""))
        line = (f"done {self.stats.done}  {failed}  running "
                f"{len(self.running)}/{self.opts.parallel}  "
                f"{self.stats.done / elapsed:.1f} jobs/s"
                + ("  (draining)" if self.stopping and not final else ""))
        if self.tty:
            if final:
                self.status.finish(line)
            else:
                self.status.show(line)
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
