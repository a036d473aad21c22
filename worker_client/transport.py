"""HTTP plumbing shared by the clients: the one retry policy, the errors it
raises, and the checks that turn a mistyped URL into one clear line.

Retries go through urllib3's ``Retry`` (mounted on a requests session).  The
policy is a time budget, not a count: connection errors, read errors and 5xx
answers are retried with exponential backoff (0.25 s doubling, at most 10 s
apart) until ``retry_for`` seconds have passed since the first failure.  A
worker gets minutes of patience (an outage never kills it); a command a
person types gets a few seconds.
"""
from __future__ import annotations

import logging
import socket
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

log = logging.getLogger(__name__)

PATIENT = 600.0   # seconds a worker waits out an outage
BRISK = 5.0       # seconds a command at a terminal keeps trying
BRISK_CONNECT = 3.0  # connect timeout of such a command
BACKOFF_MAX = 10.0  # seconds between two tries at most


class ApiError(Exception):
    """The server refused a request (4xx): retrying would not help."""

    def __init__(self, status: int, error: str, message: str, details: Any = None,
                 url: str = "") -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message
        self.details = details
        self.url = url  # the request's URL


class Unavailable(RuntimeError):
    """The server could not be reached (or kept failing) for retry_for
    seconds.  ``url`` is the server, ``reason`` a few words on why."""

    def __init__(self, message: str, url: str = "", reason: str = "",
                 reached: bool = False) -> None:
        super().__init__(message)
        self.url = url
        self.reason = reason
        self.reached = reached  # True: it answered, with 5xx; False: no answer at all


def unreachable(url: str, exc: BaseException, retry_for: float,
                what: str = "") -> Unavailable:
    """The one way both clients say the server could not be reached."""
    reason = short_reason(exc)
    return Unavailable(f"{what}cannot reach the server at {url} ({reason}; gave up after "
                       f"{retry_for:g} s)", url, reason)


def kept_failing(url: str, status: int, retry_for: float, what: str = "") -> Unavailable:
    """... and that it answered, but only with server errors."""
    return Unavailable(f"{what}the server at {url} kept answering HTTP {status} (gave up "
                       f"after {retry_for:g} s)", url, f"HTTP {status}", reached=True)


def check_url(url: str) -> str:
    """The server URL without its trailing slash; a URL without a scheme is
    refused at once (requests would fail on it in a confusing way)."""
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise ValueError(f"the server URL must start with http:// or https://, got {url!r}")
    return url.rstrip("/")


class Patience(Retry):
    """urllib3's Retry with a time budget: exhausted once the next backoff
    would end more than ``retry_for`` seconds after the first failure.  Every
    method is retried (the API's writes are safe to repeat: a repeated report
    answers 409, which the client recognises through ``history``)."""

    def __init__(self, *args: Any, retry_for: float = PATIENT, deadline: float | None = None,
                 **kw: Any) -> None:
        kw.setdefault("total", None)
        kw.setdefault("allowed_methods", None)
        kw.setdefault("status_forcelist", range(500, 600))
        kw.setdefault("backoff_factor", 0.25)
        kw.setdefault("raise_on_status", False)
        super().__init__(*args, **kw)
        self.retry_for = retry_for
        self.deadline = deadline

    def new(self, **kw: Any) -> "Patience":
        kw.setdefault("retry_for", self.retry_for)
        kw.setdefault("deadline", self.deadline if self.deadline is not None
                      else time.monotonic() + self.retry_for)
        return super().new(**kw)

    def get_backoff_time(self) -> float:
        # capped here rather than with backoff_max, which urllib3 1.26 lacks
        return min(BACKOFF_MAX, super().get_backoff_time())

    def is_exhausted(self) -> bool:
        if self.deadline is None:
            return False
        return time.monotonic() + self.get_backoff_time() > self.deadline

    def increment(self, method: str | None = None, url: str | None = None,
                  response: Any = None, error: Exception | None = None,
                  _pool: Any = None, _stacktrace: Any = None) -> "Patience":
        new = super().increment(method, url, response, error, _pool, _stacktrace)
        problem = f"HTTP {response.status}" if response is not None else short_reason(error)
        # a worker says so at each retry; a person's command says it once, at the end
        log.log(logging.WARNING if self.retry_for > 30 else logging.DEBUG,
                "%s %s: %s; retrying in %.1f s", method, url, problem, new.get_backoff_time())
        return new


def session(retry_for: float) -> requests.Session:
    s = requests.Session()
    adapter = HTTPAdapter(max_retries=Patience(retry_for=retry_for))
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


def retried(resp: requests.Response) -> bool:
    """Whether this answer came after at least one retry."""
    retries = getattr(resp.raw, "retries", None)
    return bool(retries is not None and retries.history)


def short_reason(exc: BaseException | None) -> str:
    """A few words for a connection problem: the innermost cause, named."""
    seen = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror) or "NameResolutionError" in type(seen).__name__:
            return "host name not found"
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, (TimeoutError, socket.timeout)) or "Timeout" in type(seen).__name__:
            return "timed out"
        if isinstance(seen, requests.exceptions.SSLError) or "SSL" in type(seen).__name__:
            return f"TLS error: {seen}"[:200]
        nxt = seen.__cause__ or seen.__context__
        if nxt is None and getattr(seen, "args", None):
            inner = seen.args[0]
            nxt = getattr(inner, "reason", None) if not isinstance(inner, BaseException) else inner
        if nxt is None:
            nxt = getattr(seen, "reason", None)
        if not isinstance(nxt, BaseException) or nxt is seen:
            break
        seen = nxt
    return f"{type(exc).__name__}: {exc}"[:200] if exc is not None else "no answer"
