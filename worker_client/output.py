"""A running command's output: the tail kept for the server, a file per
attempt (``--output-dir``), lines shown on the terminal (``--tee``) and the
notes its lines carry (``@event=[...]``, ``@log=[...]``, ``@var=[...]``:
see :mod:`.notes`)."""
from __future__ import annotations

import codecs
import collections
import functools
import hashlib
import re
import threading
from pathlib import Path
from typing import IO, Any, Callable

from .notes import Notes

TAIL = 16_000  # bytes of each stream kept; characters of the tail sent
MAX_LINE = 65_536  # bytes of a line without newline held before it is handed on anyway
LIVE_HELD = 1 << 20  # bytes of an attempt's output held for the server at most (then the oldest go)
LIVE_PER_BEAT = 256 << 10  # bytes of an attempt's output sent in one heartbeat at most

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
                 tee: Callable[[str], None] | None = None,
                 live: Callable[[str], None] | None = None) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = _new_file(file) if file else None
        self._tee = tee
        self._partial = b""
        self.version = 0  # grows with every chunk: tells a changed tail
        self._live = live  # gets the output decoded, in order (live logs)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

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
            if self._live is not None:
                self._live(self._decoder.decode(chunk))
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
        if self._live is not None:
            with self._lock:  # a character cut at the very end: U+FFFD
                self._live(self._decoder.decode(b"", final=True))
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


class _Piece:
    """Output of one stream not acknowledged by the server yet."""

    __slots__ = ("stream", "offset", "data")

    def __init__(self, stream: str, offset: int, data: bytes) -> None:
        self.stream, self.offset, self.data = stream, offset, bytearray(data)


class Capture:
    """Both pipes of one attempt; ``notes``, if given, collects the notes
    of both.

    It also holds the output the server has not acknowledged yet (live
    logs), both streams in the order it was read: decoded as UTF-8 (an
    invalid byte is U+FFFD, as is a NUL, which no database stores) and
    counted in bytes of that text, the offsets the server sees; at most
    LIVE_HELD bytes (past it the oldest are dropped: the server sees a gap
    and says so)."""

    def __init__(self, out_dir: Path | None = None, stem: str = "",
                 tee: Callable[[str, str], None] | None = None,
                 notes: Notes | None = None) -> None:
        self.notes = notes

        def line_handler(name: str) -> Callable[[str], None] | None:
            def each_line(line: str) -> None:
                if tee is not None:
                    tee(name, line)
                if notes is not None:
                    notes.feed(line)

            return each_line if tee is not None or notes is not None else None

        self._live_lock = threading.Lock()
        self._pieces: collections.deque[_Piece] = collections.deque()
        self._held = 0
        self._ends = {"out": 0, "err": 0}  # bytes of each stream so far
        self.out = Stream(out_dir / f"{stem}.out" if out_dir else None,
                          line_handler("stdout"), functools.partial(self._hold, "out"))
        self.err = Stream(out_dir / f"{stem}.err" if out_dir else None,
                          line_handler("stderr"), functools.partial(self._hold, "err"))

    def _hold(self, stream: str, text: str) -> None:
        if not text:
            return
        data = text.replace("\x00", "\ufffd").encode("utf-8")
        with self._live_lock:
            last = self._pieces[-1] if self._pieces else None
            if last is not None and last.stream == stream:
                last.data += data
            else:
                self._pieces.append(_Piece(stream, self._ends[stream], data))
            self._ends[stream] += len(data)
            self._held += len(data)
            while self._held > LIVE_HELD:  # the oldest go
                first = self._pieces[0]
                over = self._held - LIVE_HELD
                if over >= len(first.data):
                    self._pieces.popleft()
                    self._held -= len(first.data)
                    continue
                cut = _char_start(first.data, over)
                del first.data[:cut]
                first.offset += cut
                self._held -= cut

    def unsent(self, limit: int = LIVE_PER_BEAT) -> list[dict[str, Any]]:
        """What a heartbeat carries of this attempt's output: the oldest
        not acknowledged, in order, at most ``limit`` bytes (whole
        characters): ``[{"stream": "out"|"err", "offset", "text"}]``."""
        out: list[dict[str, Any]] = []
        with self._live_lock:
            room = limit
            for p in self._pieces:
                if room <= 0:
                    break
                end = len(p.data) if len(p.data) <= room else _char_start(p.data, room)
                if end == 0:
                    break
                out.append({"stream": p.stream, "offset": p.offset,
                            "text": p.data[:end].decode("utf-8")})
                room -= end
        return out

    def acknowledge(self, sent: list[dict[str, Any]]) -> None:
        """The server has kept what ``unsent`` gave (and the heartbeat
        carried): it is not held any more."""
        with self._live_lock:
            for item in sent:
                end = item["offset"] + len(item["text"].encode("utf-8"))
                while self._pieces and self._pieces[0].stream == item["stream"] \
                        and self._pieces[0].offset < end:
                    first = self._pieces[0]
                    cut = min(end - first.offset, len(first.data))
                    del first.data[:cut]
                    first.offset += cut
                    self._held -= cut
                    if first.data:
                        break
                    self._pieces.popleft()

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


def _char_start(data: bytearray, i: int) -> int:
    """The first index >= i that starts a UTF-8 character (or len)."""
    while i < len(data) and 0x80 <= data[i] < 0xC0:
        i += 1
    return i


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
