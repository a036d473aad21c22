"""Notes a running command leaves in its output, the job supervisor's
convention (seed 002): a line

    @event=[NAME:message]    an event of the job (e.g. @event=[CONVERGED:after 40 steps])
    @log=[message]           a log line of the job
    @var=[name:value]        a result field of the job

on stdout or stderr (surrounding blanks allowed; the text ends at the line's
last ``]``).  `jobworker run` collects them while the job runs and sends them
with its heartbeats; the server keeps them as the job's events (kinds
``event``, ``log``, ``var``).  On success the vars also become fields of the
job's result (their values as printed: strings).  Every string is cut at
MAX_TEXT characters, a heartbeat carries at most PER_BEAT notes, and at most
MAX_PENDING wait between two beats: a command that prints notes faster than
that loses the surplus, and says so in a last log note.
"""
from __future__ import annotations

import re
import threading
from typing import Any

MAX_TEXT = 4_000  # characters of one string of a note (the server's bound)
PER_BEAT = 1_000  # notes in one heartbeat (the server's bound)
MAX_PENDING = 10_000  # notes waiting for the next heartbeat, per job

NOTE = re.compile(r"^\s*@(event|log|var)=\[(.*)\]\s*$", re.S)


def parse(line: str) -> dict[str, str] | None:
    """The note a line of output carries, or None.  ``@event`` and ``@var``
    need a non-empty name before the first colon."""
    m = NOTE.match(line)
    if m is None:
        return None
    kind, text = m.group(1), m.group(2)
    if kind == "log":
        return {"kind": "log", "message": text[:MAX_TEXT]}
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not sep or not name:
        return None
    if kind == "event":
        return {"kind": "event", "name": name[:MAX_TEXT], "message": rest[:MAX_TEXT]}
    return {"kind": "var", "name": name[:MAX_TEXT], "value": rest[:MAX_TEXT]}


class Notes:
    """One attempt's notes: those not yet sent, and every var so far (the
    last value of a name wins).  Fed line by line from the output readers'
    threads; taken by whoever sends the next heartbeat."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[dict[str, str]] = []
        self._dropped = 0
        self.vars: dict[str, str] = {}

    def feed(self, line: str) -> None:
        note = parse(line)
        if note is None:
            return
        with self._lock:
            if note["kind"] == "var":
                self.vars[note["name"]] = note["value"]
            if len(self._pending) < MAX_PENDING:
                self._pending.append(note)
            else:
                self._dropped += 1

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._pending or self._dropped)

    def take(self, limit: int = PER_BEAT) -> list[dict[str, str]]:
        """Up to ``limit`` notes, oldest first, removed from the pending ones."""
        with self._lock:
            if self._dropped and len(self._pending) < limit:
                self._pending.append({"kind": "log", "message": (
                    f"jobworker: {self._dropped} notes dropped (more than {MAX_PENDING} "
                    f"between two heartbeats)")})
                self._dropped = 0
            got, self._pending = self._pending[:limit], self._pending[limit:]
            return got

    def result(self) -> dict[str, Any] | None:
        """The vars as a result's fields (None without any)."""
        with self._lock:
            return dict(self.vars) or None
