"""Client: typed methods over the jobserver JSON API, with retries.

Connection errors and 5xx answers are retried with exponential backoff for
up to ``retry_for`` seconds (see :mod:`.transport`: ten minutes by default,
so a server restart or an outage never kills a worker; a command a person
types passes a few seconds); a 4xx answer raises :class:`ApiError` at once.
"""
from __future__ import annotations

import codecs
import gzip
import json
import logging
import os
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence
from urllib.parse import quote

import requests

from .transport import (PATIENT, ApiError, Unavailable, check_url, kept_failing, retried, session,
                        unreachable)

log = logging.getLogger(__name__)

LOG_TAIL = 16_000  # characters of a job's output the server keeps
CHANGED_KEYS = 50  # changed keys a push answer names at most
MAX_KEYS = 10_000  # keys sent in one retry, priority or cancel request
MAX_CLAIM_WAIT = 60.0  # the longest a server holds a claim ("wait")
CLAIM_WAIT = 50.0  # an idle worker's claim waits this long (server WORKER_LOST_AFTER: 60 s)
_UNSET: Any = object()  # a setting not given (None means null: e.g. no cap)
__all__ = ["ApiError", "Client", "Job", "JobIterator", "Unavailable"]


@dataclass
class Job:
    key: str
    payload: Any
    stage: int
    attempt_id: int
    attempt: int = 1
    started: float = field(default_factory=time.time)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{random.randrange(16 ** 4):04x}"


ALLOCATION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")  # the API's allocation ids


def default_allocation() -> str | None:
    """The batch allocation this process runs in: JOBSERVER_ALLOCATION (set
    by `jobworker pool --scheduler local`), else SLURM_JOB_ID, else None.
    A value the API would refuse is left out (with a warning)."""
    for name in ("JOBSERVER_ALLOCATION", "SLURM_JOB_ID"):
        value = os.environ.get(name)
        if value:
            if ALLOCATION_ID.match(value):
                return value
            log.warning("%s=%r is not an allocation id (1-200 letters, digits, '.', '_', "
                        "':' or '-'): not reported", name, value[:50])
    return None


class Client:
    """One board of a jobserver, as seen by a worker or a master."""

    def __init__(self, url: str, board: str, token: str, worker: str | None = None,
                 timeout: float = 60.0, retry_for: float = PATIENT,
                 connect_timeout: float | None = None, allocation: str | None = _UNSET) -> None:
        self.url = check_url(url)
        self.board = board
        self.worker = worker or default_worker_id()
        # sent with claims and heartbeats: the attempts and the worker record it
        self.allocation = default_allocation() if allocation is _UNSET else allocation
        self.timeout = timeout
        self.retry_for = retry_for
        self.connect_timeout = timeout if connect_timeout is None else connect_timeout
        self._session = session(retry_for)
        self._session.headers["Authorization"] = f"Bearer {token}"
        self._lock = threading.Lock()  # requests.Session is not thread-safe
        self._running: dict[int, Job] = {}
        # whether the server holds a claim with "wait" (an older one refuses
        # the field: the worker then polls)
        self.can_wait = True

    # ------------------------------------------------------------ plumbing

    def _request(self, method: str, path: str, json_body: Any = None, data: bytes | None = None,
                 headers: dict[str, str] | None = None, params: dict[str, Any] | None = None,
                 conflict_ok_on_retry: bool = False, held: float = 0.0) -> Any:
        """``held``: seconds the server may hold the request on purpose (a
        claim's wait), on top of the read timeout."""
        url = f"{self.url}/api/v1/boards/{self.board}{path}"
        try:
            with self._lock:
                resp = self._session.request(method, url, json=json_body, data=data,
                                             headers=headers, params=params,
                                             timeout=(self.connect_timeout, self.timeout + held))
        except requests.RequestException as exc:
            raise unreachable(self.url, exc, self.retry_for) from None
        if resp.status_code >= 500:
            raise kept_failing(self.url, resp.status_code, self.retry_for)
        body = _json_or_none(resp)
        if resp.status_code >= 400:
            if resp.status_code == 409 and conflict_ok_on_retry and retried(resp):
                return None  # our first try went through before the outage
            if body is None or "message" not in body:
                raise ApiError(resp.status_code, resp.reason or "error",
                               f"{method} {url} answered {resp.status_code} without a jobserver "
                               f"error: is {self.url} a jobserver?", url=url)
            raise ApiError(resp.status_code, body.get("error", resp.reason), body["message"],
                           body.get("details"), url=url)
        if body is None:
            raise ApiError(resp.status_code, "not_json",
                           f"{method} {url} answered something that is not a JSON object: "
                           f"is {self.url} a jobserver?", url=url)
        return body

    # ------------------------------------------------------------- masters

    def push(self, jobs: Iterable[dict[str, Any]], chunk: int = 50_000,
             progress: Any = None, strict: bool = False) -> dict[str, Any]:
        """Push jobs ({"key", "payload", "stage"?, "after"?, "priority"?,
        "max_attempts"?}); idempotent by key: existing keys are left as they
        are.  Returns {"created": n, "existing": m, "changed": k,
        "changed_keys": [...]}: ``changed`` counts existing keys whose payload
        or ``after`` differ from what the board holds (the first 50 named).
        ``strict``: the server refuses a chunk with such keys (409, nothing of
        that chunk written; earlier chunks stay).  A job's ``after`` keys must
        be on the board already or in the same chunk: push upstream jobs
        first (``workflow.Workflow`` orders them)."""
        totals: dict[str, Any] = {"created": 0, "existing": 0, "changed": 0, "changed_keys": []}
        batch: list[dict[str, Any]] = []
        params = {"strict": "true"} if strict else None

        def flush() -> None:
            body = gzip.compress(json.dumps(batch).encode(), compresslevel=1)
            got = self._request("POST", "/jobs", data=body, params=params,
                                headers={"Content-Type": "application/json",
                                         "Content-Encoding": "gzip"})
            totals["created"] += got["created"]
            totals["existing"] += got["existing"]
            totals["changed"] += got.get("changed", 0)
            room = CHANGED_KEYS - len(totals["changed_keys"])
            totals["changed_keys"] += list(got.get("changed_keys") or [])[:max(room, 0)]
            if progress is not None:
                progress(len(batch))
            batch.clear()

        for job in jobs:
            batch.append(job)
            if len(batch) >= chunk:
                flush()
        if batch:
            flush()
        return totals

    def status(self) -> dict[str, Any]:
        """Counts per stage (``counts``: stage -> jobs), ``failed``,
        ``cancelled``, ``lost_workers``, ``alive_workers`` and the stages."""
        s = self._request("GET", "")
        s["counts"] = {int(k): v for k, v in s["counts"].items()}
        return s

    def cancel(self, keys: Sequence[str] | None = None) -> int:
        body = {} if keys is None else {"keys": list(keys)}
        return self._request("POST", "/cancel", json_body=body)["cancelled"]

    def retry(self, keys: Sequence[str] | None = None, failed: bool = False,
              cancelled: bool = False) -> int:
        """Put failed or cancelled jobs back where they last waited, with a
        fresh attempt budget (blocked again if their upstream jobs are not
        done): the jobs named by ``keys``, or every ``failed`` and/or
        ``cancelled`` job of the board.  Returns how many were retried."""
        if (keys is not None) == (failed or cancelled):
            raise ValueError("retry: give keys, or failed=True and/or cancelled=True")
        if keys is not None:
            keys = list(keys)
            return sum(self._request("POST", "/retry",
                                     json_body={"keys": keys[i:i + MAX_KEYS]})["retried"]
                       for i in range(0, len(keys), MAX_KEYS))
        states = [s for s, wanted in (("failed", failed), ("cancelled", cancelled)) if wanted]
        return sum(self._request("POST", "/retry", json_body={"state": s})["retried"]
                   for s in states)

    def set_priority(self, keys: Sequence[str], priority: int) -> int:
        """Change the priority of waiting (or blocked) jobs; claims take the
        highest first.  Returns how many changed (running, done, failed and
        unknown keys are left alone)."""
        keys = list(keys)
        return sum(self._request("POST", "/priority",
                                 json_body={"keys": keys[i:i + MAX_KEYS],
                                            "priority": priority})["changed"]
                   for i in range(0, len(keys), MAX_KEYS))

    def patch_board(self, max_running: int | None = _UNSET,
                    max_attempts: int = _UNSET) -> dict[str, Any]:
        """Change the board's settings: ``max_running`` (at most that many of
        its jobs at odd stages at once; None: no cap) and its default
        ``max_attempts``.  Only what is given is sent; answers the settings."""
        body: dict[str, Any] = {}
        if max_running is not _UNSET:
            body["max_running"] = max_running
        if max_attempts is not _UNSET:
            body["max_attempts"] = max_attempts
        if not body:
            raise ValueError("patch_board: give max_running and/or max_attempts")
        return self._request("PATCH", "", json_body=body)

    def create_token(self, role: str, name: str = "jobworker",
                     expires_in: float | None = None) -> dict[str, Any]:
        """A new token of this board with ``role`` (owner, submitter, worker,
        viewer), stopping after ``expires_in`` seconds if given (needs an
        owner's token or key).  Answers {"id", "token", "role", "expires_at"}."""
        body: dict[str, Any] = {"role": role, "name": name}
        if expires_in is not None:
            body["expires_in"] = expires_in
        return self._request("POST", "/tokens", json_body=body)

    def tokens(self) -> list[dict[str, Any]]:
        return self._request("GET", "/tokens")["tokens"]

    def revoke_token(self, token_id: int) -> None:
        self._request("DELETE", f"/tokens/{int(token_id)}")

    def share_link(self, expires_in: float | None = None,
                   name: str = "share link") -> dict[str, Any]:
        """A read-only link to the board's pages (revoke it with
        revoke_token(its id)).  Answers {"id", "url", "token", "expires_at"}."""
        body: dict[str, Any] = {"name": name}
        if expires_in is not None:
            body["expires_in"] = expires_in
        return self._request("POST", "/share", json_body=body)

    def job(self, key: str) -> dict[str, Any]:
        """One job: state, stage, attempts (per stage), error, payload,
        result, its attempts' history and log tails."""
        return self._request("GET", f"/jobs/{quote(key, safe='')}")

    def events(self, after: str | None = None, types: Sequence[str] = (),
               key: str | None = None, wait: int = 0, limit: int = 500) -> dict[str, Any]:
        """The board's events after a cursor (``None``: from the oldest the
        server keeps; ``"now"``: only later ones): ``{"events": [...],
        "next_cursor": c}``; pass ``next_cursor`` back as ``after``.
        ``wait``: seconds the server may hold the request while nothing
        happens.  A cursor older than the server's retention raises
        ApiError 410."""
        params: dict[str, Any] = {"limit": limit, "wait": wait}
        if after is not None:
            params["after"] = after
        if types:
            params["types"] = ",".join(types)
        if key is not None:
            params["key"] = key
        return self._request("GET", "/events", params=params, held=wait)

    def follow_events(self, after: str | None = None, types: Sequence[str] = (),
                      key: str | None = None, wait: int = 30) -> Iterator[dict[str, Any]]:
        """Every event after ``after`` as it happens, forever (long-polls of
        ``wait`` seconds)."""
        while True:
            page = self.events(after, types, key, wait=wait)
            yield from page["events"]
            after = page["next_cursor"]

    def failures(self) -> dict[str, Any]:
        """Failed jobs grouped by error: ``{"total": n, "groups": [{"error",
        "count", "keys"}]}``, biggest groups first."""
        return self._request("GET", "/failures")

    def list_jobs(self, stage: int | None = None, state: str | None = None,
                  limit: int = 1000, include: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
        """Every job (of a stage, of a state) page by page; ``include``:
        more fields per job, e.g. ("result", "payload")."""
        cursor = None
        while True:
            params = {"limit": limit, "stage": stage, "state": state, "cursor": cursor,
                      "include": ",".join(include) or None}
            page = self._request("GET", "/jobs", params={k: v for k, v in params.items()
                                                         if v is not None})
            yield from page["jobs"]
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def workers(self) -> list[dict[str, Any]]:
        return self._request("GET", "/workers")["workers"]

    def resources(self, key: str) -> list[dict[str, Any]]:
        """A job's resource samples over time, oldest first: {"attempt_id",
        "stage", "at", "host", "allocation", "cpu_percent", "rss_bytes",
        "runtime_s"}."""
        return self._request("GET", f"/jobs/{quote(key, safe='')}/resources")["samples"]

    # ----------------------------------------------------------- live logs

    def log(self, key: str, attempt: int | None = None, stream: str = "both") -> str:
        """What an attempt of the job printed, as the server keeps it
        (default: its latest attempt; ``stream`` "out", "err" or "both").
        Output dropped by the server's bounds shows as one line saying so."""
        resp = self._log_response(self._session, key, attempt, stream, follow=False)
        return resp.content.decode("utf-8", errors="replace")

    def follow_log(self, key: str, attempt: int | None = None,
                   stream: str = "both") -> Iterator[str]:
        """The attempt's output as it comes, piece by piece, until the
        attempt ends (what it printed so far first).  A job that has not
        run yet is waited for (its first attempt is followed)."""
        own = session(self.retry_for)  # this session's lock is not held for hours
        own.headers["Authorization"] = self._session.headers["Authorization"]
        try:
            resp = self._log_response(own, key, attempt, stream, follow=True)
            if resp.headers.get("X-Jobserver-Attempts") == "0":
                log.info("job %s has not started yet: waiting for its first attempt", key)
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            try:
                for piece in resp.iter_content(chunk_size=None):
                    text = decoder.decode(piece.replace(b"\0", b""))  # NUL: keep-alive
                    if text:
                        yield text
            except requests.RequestException as exc:
                raise unreachable(self.url, exc, self.retry_for) from None
            finally:
                resp.close()
        finally:
            own.close()

    def _log_response(self, via: requests.Session, key: str, attempt: int | None,
                      stream: str, follow: bool) -> requests.Response:
        url = f"{self.url}/api/v1/boards/{self.board}/logs/{quote(key, safe='')}"
        params: dict[str, Any] = {"stream": stream}
        if attempt is not None:
            params["attempt"] = attempt
        if follow:
            params["follow"] = "1"
        lock = self._lock if via is self._session else threading.Lock()
        try:
            with lock:
                resp = via.get(url, params=params, stream=follow,
                               timeout=(self.connect_timeout, self.timeout))
        except requests.RequestException as exc:
            raise unreachable(self.url, exc, self.retry_for) from None
        if resp.status_code >= 500:
            raise kept_failing(self.url, resp.status_code, self.retry_for)
        if resp.status_code >= 400:
            body = _json_or_none(resp)
            if body is None or "message" not in body:
                raise ApiError(resp.status_code, resp.reason or "error",
                               f"GET {url} answered {resp.status_code} without a jobserver "
                               f"error: is {self.url} a jobserver?", url=url)
            raise ApiError(resp.status_code, body.get("error", resp.reason), body["message"],
                           body.get("details"), url=url)
        return resp

    # --------------------------------------------------------------- pools

    def report_allocation(self, allocation: str, state: str, **fields: Any) -> dict[str, Any]:
        """What the scheduler says of one allocation of a pool: ``state``
        "pending", "running" or "ended", and (at the first report) "pool",
        "scheduler", "nodes", "workers_per_node", "time_limit_s"; "reason"
        any time.  Answers the server's row (with its workers, jobs held,
        lost attempts)."""
        return self._request("PUT", f"/allocations/{quote(allocation, safe='')}",
                             json_body={"state": state, **fields})

    def allocations(self) -> list[dict[str, Any]]:
        """The board's allocations, newest first (at most 200)."""
        return self._request("GET", "/allocations")["allocations"]

    # ------------------------------------------------------------- workers

    def claim(self, stage: int, n: int = 1, to_stage: int | None = None,
              wait: float = 0.0) -> list[Job]:
        """Up to n jobs of ``stage``.  ``wait`` (seconds, at most 60): when
        none is claimable, the server holds the claim until one is or the
        time is up (an empty list then); a server too old for it answers at
        once (``can_wait`` turns False: the caller polls)."""
        body: dict[str, Any] = {"stage": stage, "n": n, "worker": self.worker,
                                "host": socket.gethostname(), "pid": os.getpid()}
        if to_stage is not None:
            body["to_stage"] = to_stage
        if self.allocation:
            body["allocation"] = self.allocation
        wait = min(max(float(wait), 0.0), MAX_CLAIM_WAIT) if self.can_wait else 0.0
        if wait:
            body["wait"] = wait
        try:
            got = self._request("POST", "/claim", json_body=body, held=wait)["jobs"]
        except ApiError as exc:
            if not wait or exc.status != 400 or "wait" not in exc.message:
                raise
            log.info("%s does not hold claims (%s): polling instead", self.url, exc.message)
            self.can_wait = False
            del body["wait"]
            got = self._request("POST", "/claim", json_body=body)["jobs"]
        jobs = [Job(j["key"], j["payload"], j["stage"], j["attempt_id"], j["attempt"])
                for j in got]
        for j in jobs:
            self._running[j.attempt_id] = j
        return jobs

    def advance(self, jobs: Job | Sequence[Job], to_stage: int | None = None,
                result: Any = None, filename: str | None = None,
                log_tail: str | None = None) -> dict[str, int] | None:
        jobs = [jobs] if isinstance(jobs, Job) else list(jobs)
        if not jobs:
            return {"advanced": 0, "cancelled": 0}
        items = []
        for j in jobs:
            item: dict[str, Any] = {"attempt_id": j.attempt_id}
            if to_stage is not None:
                item["to_stage"] = to_stage
            if result is not None:
                item["result"] = result
            if filename is not None:
                item["filename"] = filename
            if log_tail:
                item["log"] = log_tail
            items.append(item)
        try:
            return self._request("POST", "/advance", json_body={"attempts": items},
                                 conflict_ok_on_retry=True)
        finally:
            for j in jobs:
                self._running.pop(j.attempt_id, None)

    def fail(self, job: Job, error: str, exit_code: int | None = None,
             log_tail: str | None = None) -> str | None:
        body: dict[str, Any] = {"attempt_id": job.attempt_id, "error": error}
        if exit_code is not None:
            body["exit_code"] = exit_code
        if log_tail is not None:
            body["log"] = log_tail
        try:
            got = self._request("POST", "/fail", json_body=body, conflict_ok_on_retry=True)
        finally:
            self._running.pop(job.attempt_id, None)
        return None if got is None else got["outcome"]

    def release(self, jobs: Job | Sequence[Job]) -> int:
        jobs = [jobs] if isinstance(jobs, Job) else list(jobs)
        if not jobs:
            return 0
        try:
            got = self._request("POST", "/release",
                                json_body={"attempt_ids": [j.attempt_id for j in jobs]},
                                conflict_ok_on_retry=True)
        finally:
            for j in jobs:
                self._running.pop(j.attempt_id, None)
        return 0 if got is None else got["released"]

    def heartbeat(self, samples: dict[int, dict[str, Any]] | None = None,
                  resources: dict[str, Any] | None = None,
                  logs: dict[int, str] | None = None,
                  notes: dict[int, list[dict[str, str]]] | None = None,
                  chunks: dict[int, dict[str, Any]] | None = None,
                  ) -> dict[str, list[int]]:
        """Renew the leases of the jobs this client holds; answers which of
        them to stop (``cancelled``, ``lost``).  ``logs``: the output tail of
        running attempts (attempt id -> text), shown while they run.
        ``notes``: attempt id -> [{"kind": "event", "name", "message"} |
        {"kind": "log", "message"} | {"kind": "var", "name", "value"}],
        kept as the job's events (at most 1,000 a beat, strings of at most
        4,000 characters: see :mod:`.notes`).  ``chunks``: attempt id ->
        {"out": {"offset", "text"}, "err": ...}, what running attempts printed
        since the last beat (live logs; ``offset``: bytes of UTF-8 before
        ``text`` in its stream; a repeated part is skipped by the server)."""
        body: dict[str, Any] = {"worker": self.worker, "host": socket.gethostname(),
                                "pid": os.getpid(), "running": list(self._running)}
        if self.allocation:
            body["allocation"] = self.allocation
        if samples:
            body["samples"] = {str(k): v for k, v in samples.items()}
        if logs:
            body["logs"] = {str(k): v[-LOG_TAIL:] for k, v in logs.items()}
        if notes:
            body["notes"] = {str(k): v for k, v in notes.items() if v}
        if chunks:
            body["chunks"] = {str(k): v for k, v in chunks.items() if v}
        if resources:
            body["resources"] = resources
        return self._request("POST", "/heartbeat", json_body=body)

    def goodbye(self, resources: dict[str, Any] | None = None) -> None:
        """Tell the server this worker stops cleanly (it is then shown as
        stopped, not lost), with its last ``resources`` sample if given."""
        body: dict[str, Any] = {"worker": self.worker, "host": socket.gethostname(),
                                "pid": os.getpid(), "running": list(self._running),
                                "stopped": True}
        if self.allocation:
            body["allocation"] = self.allocation
        if resources:
            body["resources"] = resources
        self._request("POST", "/heartbeat", json_body=body)

    def lease_seconds(self, stage: int) -> float | None:
        """The lifetime (seconds) of the stage a job claimed at ``stage``
        sits in while it runs, or None if it has none."""
        for s in self.status()["stages"]:
            if s["stage"] == stage + 1 and s["lifetime"]:
                return s["lifetime"] * 60.0
        return None

    def jobs(self, stage: int, batch: int = 1, to_stage: int | None = None,
             heartbeat_every: float | None = None, wait: bool = False,
             poll: float = 2.0) -> "JobIterator":
        """Iterate over claimed jobs; see JobIterator."""
        return JobIterator(self, stage, batch, to_stage, heartbeat_every, wait, poll)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class JobIterator:
    """Claims ``batch`` jobs at a time and hands them out one by one while a
    background thread heartbeats.  Each job is advanced when the loop body
    returns; when the body raises, the job is failed with the error.  Jobs
    claimed but not yet handed out are released when the loop stops early.

    Used as ``with client.jobs(0) as jobs: for job in jobs: ...`` it tells a
    ``break`` (the job is released) from an exception (the job is failed);
    a bare ``for`` loop cannot, and fails the job in both cases.
    """

    def __init__(self, client: Client, stage: int, batch: int, to_stage: int | None,
                 heartbeat_every: float | None, wait: bool, poll: float) -> None:
        self.client = client
        self.stage = stage
        self.batch = batch
        self.to_stage = to_stage
        self.wait = wait
        self.poll = poll
        self.current: Job | None = None
        self.pending: list[Job] = []
        self._stop = threading.Event()
        self._gen = self._run()
        if heartbeat_every is None:
            lease = client.lease_seconds(stage)
            heartbeat_every = min(30.0, max(0.5, lease / 4)) if lease else 30.0
        # The thread must not hold the iterator: a bare for loop whose body
        # raises drops the iterator, and that is what fails the job.
        self._beat = threading.Thread(target=_beat, args=(client, self._stop, heartbeat_every),
                                      daemon=True)
        self._beat.start()

    def __iter__(self) -> "JobIterator":
        return self

    def __next__(self) -> Job:
        return next(self._gen)

    def _run(self) -> Iterator[Job]:
        idle = False
        try:
            while True:
                if not self.pending:
                    self.pending = self.client.claim(self.stage, self.batch, self.to_stage,
                                                     wait=CLAIM_WAIT if idle else 0.0)
                    if not self.pending:
                        if not self.wait:
                            return
                        idle = True  # from now on the server holds the claim until work comes
                        if not self.client.can_wait:
                            time.sleep(self.poll)
                        continue
                self.current = self.pending.pop(0)
                yield self.current
                self.client.advance(self.current, to_stage=None if self.to_stage is None
                                    else self.to_stage + 1)
                self.current = None
        except GeneratorExit:
            self._finish("the loop over jobs stopped while this job ran")
            raise
        finally:
            self._stop.set()

    def _finish(self, error: str | None, release_current: bool = False) -> None:
        if self.current is not None:
            if release_current:
                self.client.release(self.current)
            else:
                self.client.fail(self.current, error or "stopped")
            self.current = None
        if self.pending:
            self.client.release(self.pending)
            self.pending = []

    def __enter__(self) -> "JobIterator":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._finish(None, release_current=True)
        else:
            self._finish(f"{exc_type.__name__}: {exc}")
        self._gen.close()
        self._stop.set()


def _beat(client: Client, stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        try:
            client.heartbeat()
        except Exception as exc:  # the next beat tries again
            log.warning("heartbeat failed: %s", exc)


def _json_or_none(resp: requests.Response) -> dict[str, Any] | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
