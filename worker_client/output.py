"""A running command's output: the tail kept for the server, a file per
attempt (``--output-dir``), lines shown on the terminal (``--tee``) and the
notes its lines carry (``@event=[...]``, ``@log=[...]``, ``@var=[...]``:
see :mod:`.notes`)."""
from __future__ import annotations

import collections
import hashlib
import re
import threading
from pathlib import Path
from typing import IO, Any, Callable

from .notes import Notes

TAIL = 16_000  # bytes of each stream kept; characters of the tail sent
MAX_LINE = 65_536  # bytes of a line without newline held before it is handed on anyway

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def file_stem(key: str, stage: int, attempt: int) -> str:
    """``<key>.s<stage>.a<attempt>``, the key made safe for a file name.  A
    key that had to change gets a short hash of itself, so that "a/b" and
    "a_b" do not share files."""
    safe = _UNSAFE.sub("_", key)[:150]
    if safe.startswith("."):
        safe = "_" + safe[1:]
    if safe != key:
        safe += "-" + hashlib.sha1(key.encode()).hexdigest()[:8]
    return f"{safe}.s{stage}.a{attempt}"


class Stream:
    """One pipe of a command (stdout or stderr): keeps its last TAIL bytes,
    optionally writes everything to a file and hands whole lines to ``tee``."""

    def __init__(self, file: Path | None = None,
                 tee: Callable[[str], None] | None = None) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = _new_file(file) if file else None
        self._tee = tee
        self._partial = b""
        self.version = 0  # grows with every chunk: tells a changed tail

    def pump(self, pipe: Any) -> None:
        """Read the pipe to its end (in a thread of its own), then close it."""
        try:
            for chunk in iter(lambda: pipe.read1(65536), b""):
                self.feed(chunk)
        finally:
            pipe.close()
            self.close()

    def feed(self, chunk: bytes) -> None:
        with self._lock:
            self._chunks.append(chunk)
            self._size += len(chunk)
            while self._size > TAIL and len(self._chunks) > 1:
                self._size -= len(self._chunks.popleft())
            self.version += 1
        if self._file is not None:
            self._file.write(chunk)
        if self._tee is not None:
            lines = (self._partial + chunk).split(b"\n")
            self._partial = lines.pop()
            if len(self._partial) > MAX_LINE:  # no newline in sight: a line of its own
                lines.append(self._partial)
                self._partial = b""
            for line in lines:
                self._tee(line.decode("utf-8", errors="replace").rstrip("\r"))

    def close(self) -> None:
        if self._tee is not None and self._partial:
            self._tee(self._partial.decode("utf-8", errors="replace"))
            self._partial = b""
        if self._file is not None:
            self._file.close()
            self._file = None

    def text(self) -> str:
        with self._lock:
            data = b"".join(self._chunks)
        return data[-TAIL:].decode("utf-8", errors="replace")


class Capture:
    """Both pipes of one attempt; ``notes``, if given, collects the notes
    of both."""

    def __init__(self, out_dir: Path | None = None, stem: str = "",
                 tee: Callable[[str, str], None] | None = None,
                 notes: Notes | None = None) -> None:
        self.notes = notes

        def one(name: str, suffix: str) -> Stream:
            def each_line(line: str) -> None:
                if tee is not None:
                    tee(name, line)
                if notes is not None:
                    notes.feed(line)

            return Stream(out_dir / f"{stem}.{suffix}" if out_dir else None,
                          each_line if tee is not None or notes is not None else None)

        self.out = one("stdout", "out")
        self.err = one("stderr", "err")

    @property
    def version(self) -> int:
        return self.out.version + self.err.version

    def tail(self, limit: int = TAIL) -> str:
        """The end of both streams, labelled, in at most ``limit``
        characters (stderr keeps at least half when both are long)."""
        out, err = self.out.text(), self.err.text()
        if len(out) + len(err) > limit - 40:
            keep_err = min(len(err), max((limit - 40) // 2, limit - 40 - len(out)))
            err = err[len(err) - keep_err:]
            out = out[len(out) - (limit - 40 - keep_err):] if limit - 40 - keep_err else ""
        return ((f"--- stdout ---\n{out}" if out else "")
                + (f"--- stderr ---\n{err}" if err else ""))


def _new_file(path: Path) -> IO[bytes]:
    """A file of its own for one attempt's pipe: an attempt number given
    back by a release comes again, and must not overwrite the first run's
    output (the next one is name.1.out, name.2.out, ...)."""
    candidate = path
    for n in range(1, 10_000):
        try:
            return open(candidate, "xb", buffering=0)
        except FileExistsError:
            candidate = path.with_name(f"{path.stem}.{n}{path.suffix}")
    return open(candidate, "wb", buffering=0)
