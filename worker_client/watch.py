"""`jobworker watch`: a board followed live until nothing is left to run."""
from __future__ import annotations

import shutil
import sys
import time
from typing import IO, Any

from .client import ApiError, Client, Unavailable
from .show import failure_lines, group_failures, progress_of, watch_frame, watch_line

SCAN_LIMIT = 100_000  # failed jobs grouped here at most, for a server without /failures


def read_failures(client: Client) -> dict[str, Any]:
    """The board's failed jobs grouped by error: the server's grouping, or
    (a server that predates ``/failures``) grouped here from the job list."""
    try:
        return client.failures()
    except ApiError as exc:
        if exc.status not in (404, 405):
            raise
    jobs = []
    for n, job in enumerate(client.list_jobs(state="failed")):
        if n >= SCAN_LIMIT:
            break
        jobs.append(job)
    return group_failures(jobs)


def finished(p: dict[str, Any]) -> bool:
    """Nothing waiting or running: whatever is left cannot move by itself."""
    return not p.get("waiting") and not p.get("running")


class _Rate:
    """Jobs finished per minute as seen from here, for a server that does
    not send its own rate."""

    def __init__(self) -> None:
        self.first: tuple[float, int] | None = None

    def fill(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("per_minute") is not None:
            return p
        now = time.monotonic()
        ended = p.get("done", 0) + p.get("failed", 0) + p.get("cancelled", 0)
        if self.first is None:
            self.first = (now, ended)
            return p
        t0, n0 = self.first
        if now - t0 < 1:
            return p
        rate = (ended - n0) * 60 / (now - t0)
        left = p.get("waiting", 0) + p.get("running", 0)
        return dict(p, per_minute=rate, eta_seconds=left * 60 / rate if rate > 0 else None)


def watch(client: Client, interval: float = 2.0, out: IO[str] | None = None,
          tty: bool | None = None) -> int:
    """Refresh every ``interval`` seconds until the board has nothing waiting
    or running; 0 if no job failed, 3 if some did.  An unreachable server
    stops it at once on the first look; later it is shown and retried (a
    server restart does not end a long watch)."""
    out = out if out is not None else sys.stdout
    tty = out.isatty() if tty is None else tty
    drawn, p, failures, rate = 0, None, None, _Rate()
    while True:
        note = ""
        try:
            s = client.status()
            p = rate.fill(progress_of(s))
            failures = read_failures(client) if p.get("failed") else None
        except Unavailable as exc:
            if p is None:
                raise
            note = f"(server unreachable: {exc.reason}; still trying)"
        assert p is not None
        done = finished(p) and not note
        if tty:
            width = max(20, shutil.get_terminal_size().columns - 1)
            lines = [line[:width] for line in watch_frame(client.board, p, failures, note)]
            up = f"\033[{drawn}F" if drawn else ""
            out.write(up + "\033[J" + "\n".join(lines) + "\n")
            drawn = len(lines)
        else:
            out.write(watch_line(client.board, p) + (f" {note}" if note else "") + "\n")
        out.flush()
        if done:
            break
        time.sleep(interval)
    failed = p.get("failed", 0)
    if not tty and failures:
        out.write("\n".join(failure_lines(failures)) + "\n")
    out.write(f"board {client.board}: nothing left to run: {p.get('done', 0)} done, "
              f"{failed} failed, {p.get('cancelled', 0)} cancelled\n")
    out.flush()
    return 3 if failed else 0
