"""The terminal: a live status line that other output does not glue onto,
and the way times are written for people (ages, durations)."""
from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
import time
from typing import IO, Iterator

CLEAR = "\r\033[K"


class StatusLine:
    """One line kept at the bottom of a terminal and rewritten in place.
    Whatever else is written while it is shown (log records, --tee lines)
    goes through :meth:`above`: the line is cleared first and redrawn after."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.text = ""
        self.lock = threading.RLock()
        self._handlers: list[tuple[logging.StreamHandler, IO[str]]] = []

    def show(self, text: str) -> None:
        with self.lock:
            self.text = text
            self.stream.write(CLEAR + text)
            self.stream.flush()

    def finish(self, text: str) -> None:
        """Leave ``text`` as an ordinary line; no status line after it."""
        with self.lock:
            self.text = ""
            self.stream.write(CLEAR + text + "\n")
            self.stream.flush()

    @contextlib.contextmanager
    def above(self) -> Iterator[None]:
        with self.lock:
            if self.text:
                self.stream.write(CLEAR)
            yield
            if self.text:
                self.stream.write(self.text)
                self.stream.flush()

    def write_line(self, stream: IO[str], line: str) -> None:
        with self.above():
            stream.write(line + "\n")
            stream.flush()

    def capture_logging(self) -> None:
        """Route the root logger's terminal handlers through :meth:`above`."""
        for h in logging.getLogger().handlers:
            if type(h) is logging.StreamHandler and _isatty(h.stream):
                old = h.setStream(_Above(h.stream, self))  # type: ignore[arg-type]
                if old is not None:
                    self._handlers.append((h, old))

    def release_logging(self) -> None:
        for h, old in self._handlers:
            h.setStream(old)
        self._handlers.clear()


class _Above:
    """A stream for a logging handler: each record is written above the
    status line (StreamHandler writes a record and its newline at once)."""

    def __init__(self, stream: IO[str], status: StatusLine) -> None:
        self._stream = stream
        self._status = status

    def write(self, s: str) -> int:
        with self._status.above():
            return self._stream.write(s)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return True


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False


def duration(seconds: float | None) -> str:
    """3 s, 4 min, 2.5 h, 3 d."""
    if seconds is None:
        return "?"
    s = max(0.0, float(seconds))
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    if s < 36 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def age(epoch: float | None, now: float | None = None) -> str:
    """An epoch time as "12 s ago" ("never" for None)."""
    if epoch is None:
        return "never"
    return duration((time.time() if now is None else now) - float(epoch)) + " ago"


DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw]?)$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """'7d', '12h', '30m', '90s', '2w' or plain seconds, at most 10 years
    (a token's expiry, for `jobworker token` and `jobserver token`);
    click.BadParameter else."""
    import click

    m = DURATION_RE.match(text.strip().lower())
    if not m or float(m.group(1)) <= 0:
        raise click.BadParameter(f"expected a duration like 7d, 12h, 30m or 3600, got {text!r}")
    seconds = float(m.group(1)) * UNITS[m.group(2)]
    if seconds > 10 * 365 * 86400:
        raise click.BadParameter("at most 10 years")
    return seconds


def expiry_text(expires_at: float | None) -> str:
    """A token's expiry as the token lists print it."""
    if expires_at is None:
        return "never expires"
    if expires_at <= time.time():
        return "expired"
    return "expires " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expires_at))
