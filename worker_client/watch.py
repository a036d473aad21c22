"""`jobworker watch`: a board followed live until nothing is left to run."""
from __future__ import annotations

import shutil
import sys
import time
from typing import IO, Any

from .client import Client, Unavailable
from .show import failure_lines, watch_frame, watch_line

def finished(p: dict[str, Any]) -> bool:
    """Nothing waiting or running: whatever is left cannot move by itself."""
    return not p.get("waiting") and not p.get("running")


def watch(client: Client, interval: float = 2.0, out: IO[str] | None = None,
          tty: bool | None = None) -> int:
    """Refresh every ``interval`` seconds until the board has nothing waiting
    or running; 0 if no job failed, 3 if some did.  An unreachable server
    stops it at once on the first look; later it is shown and retried (a
    server restart does not end a long watch)."""
    out = out if out is not None else sys.stdout
    tty = out.isatty() if tty is None else tty
    drawn, p, failures = 0, None, None
    while True:
        note = ""
        try:
            s = client.status()
            p = s["progress"]
            failures = client.failures() if p.get("failed") else None
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
