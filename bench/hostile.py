#!/usr/bin/env python3
"""Benchmark hostile input: decompression bombs and idle connections.

Starts `jobserver serve` (eventlet, as by default) on a free port with a
fresh SQLite file and prints, each beside a baseline measured in the same
run:

- zlib bombs (a JSON job list whose command is gigabytes of one letter,
  compressed about 1,000:1, as far as deflate goes) posted to the classic
  ``/set`` and to the API push: the answer's status and time, the server's
  peak memory during the request against its memory before, and how long a
  bystander's ``GET /`` waited meanwhile; the baseline is an honest push of
  about the same compressed size;
- ``GET /`` answer times with 2,000 idle connections open against the
  same with none; then 2,000 clients connecting at the same moment (a job
  array starting), each asking ``GET /``.

    .venv/bin/python bench/hostile.py
    .venv/bin/python bench/hostile.py --bomb-mb 1.2 --bomb-mb 2.1 --idle 2000
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from classic_bench import ADMIN_TOKEN, start_server  # noqa: E402

MB = 1 << 20
BLOCK = 16 * MB


# ------------------------------------------------------------------ memory

def rss(pid: int) -> int:
    """Resident memory of a process now, in bytes (Linux /proc)."""
    return _status_kb(pid, "VmRSS") * 1024


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


class PeakMemory:
    """The peak resident memory of a process while a block runs: its
    high-water mark (VmHWM), reset first where the kernel allows it, and
    samples of VmRSS every few milliseconds in any case."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss(self.pid))
            except (OSError, RuntimeError):
                return
            self._stop.wait(0.005)

    def __enter__(self) -> "PeakMemory":
        try:  # "5" resets the high-water mark (Linux >= 4.0)
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self._hwm_reset = True
        except OSError:
            self._hwm_reset = False
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._hwm_reset:
            self.peak = max(self.peak, _status_kb(self.pid, "VmHWM") * 1024)


# ------------------------------------------------------------------- bombs

def bomb(prefix: bytes, suffix: bytes, inflated: int) -> bytes:
    """A zlib stream of ``prefix``, ``inflated`` bytes of "a", ``suffix``."""
    z = zlib.compressobj(9)
    parts = [z.compress(prefix)]
    block = b"a" * BLOCK
    left = inflated
    while left > 0:
        parts.append(z.compress(block[:min(left, BLOCK)]))
        left -= BLOCK
    parts.append(z.compress(suffix))
    parts.append(z.flush())
    return b"".join(parts)


def bomb_of_size(kind: str, compressed_mb: float) -> tuple[bytes, int]:
    """A bomb of about ``compressed_mb`` for the classic or the API push,
    and the size it inflates to (deflate's best is about 1,030:1)."""
    inflated = int(compressed_mb * MB * 1030)
    if kind == "classic":
        prefix, suffix = b'{"1": {"jobstage": 0, "jobcmd": "', b'"}}'
    else:
        prefix, suffix = b'[{"key": "k", "payload": "', b'"}]'
    body = bomb(prefix, suffix, inflated)
    return body, inflated + len(prefix) + len(suffix)


def honest(kind: str, compressed_mb: float) -> tuple[bytes, int]:
    """A real job list of about ``compressed_mb`` compressed, and its job count."""
    n = 1000
    while True:
        if kind == "classic":
            data = {str(i): {"jobstage": 0, "jobcmd": ["sim", i, f"in/{i:08d}.dat"]}
                    for i in range(n)}
        else:
            data = [{"key": f"j{i}", "payload": ["sim", i, f"in/{i:08d}.dat"]}
                    for i in range(n)]
        body = zlib.compress(json.dumps(data).encode(), 6)
        if len(body) >= compressed_mb * MB:
            return body, n
        n = int(n * compressed_mb * MB / len(body) * 1.05) + 1


# ---------------------------------------------------------------- requests

def post(url: str, body: bytes, headers: dict[str, str],
         timeout: float = 600) -> tuple[int, float, str]:
    """(status, seconds, one line of the answer)."""
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, text = r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode(errors="replace")
    except OSError as e:
        status, text = 0, f"no answer: {e}"
    took = time.perf_counter() - t0
    try:
        text = json.loads(text).get("message", text)
    except (ValueError, AttributeError):
        pass
    return status, took, " ".join(str(text).split())[:110]


def get_time(url: str, timeout: float = 60) -> float | None:
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            r.read()
    except OSError:
        return None
    return time.perf_counter() - t0


class Bystander:
    """Another client asking for ``GET /`` every 50 ms while a request
    runs: the longest it waited for an answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            took = get_time(self.url + "/")
            self.longest = max(self.longest, took if took is not None else float("inf"))
            self._stop.wait(0.05)

    def __enter__(self) -> "Bystander":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def make_board(url: str, name: str) -> str:
    req = urllib.request.Request(
        f"{url}/api/v1/boards", method="POST",
        data=json.dumps({"name": name, "lifetimes": [0, 60, 0]}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())["token"]


def measure(url: str, pid: int, what: str, target: str, body: bytes,
            headers: dict[str, str], inflated: str) -> None:
    before = rss(pid)
    with Bystander(url) as bystander, PeakMemory(pid) as peak:
        status, took, message = post(url + target, body, headers)
    time.sleep(0.5)
    after = rss(pid)
    print(f"{what:24s} {len(body) / MB:5.2f} MB -> {inflated:>12s}: {status} in {took:6.2f} s, "
          f"server RSS {before / MB:5.0f} MB before, peak {peak.peak / MB:5.0f} MB "
          f"(+{(peak.peak - before) / MB:4.0f}), {after / MB:5.0f} MB after; "
          f"GET / waited up to {bystander.longest:5.2f} s")
    print(f"{'':24s} answer: {message}")


# ------------------------------------------------------------- connections

def raise_file_limit(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 500
    if soft != resource.RLIM_INFINITY and soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            raise SystemExit(f"the open-file limit ({hard}) leaves no room for {n} connections")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def open_idle(port: int, n: int) -> list[socket.socket]:
    """Up to ``n`` connections opened one after the other, sending nothing
    (fewer if the server stops taking them)."""
    socks = []
    for _ in range(n):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=3))
        except OSError:
            break
    return socks


def open_burst(port: int, n: int, timeout: float = 60) -> tuple[list[socket.socket], float]:
    """``n`` connections started at once (a job array starting): the
    sockets and the seconds until the last was established."""
    socks = []
    t0 = time.perf_counter()
    with selectors.DefaultSelector() as sel:
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            sel.register(s, selectors.EVENT_WRITE)
            socks.append(s)
        pending = n
        while pending and time.perf_counter() - t0 < timeout:
            for key, _ in sel.select(timeout=1):
                sel.unregister(key.fileobj)
                pending -= 1
    return socks, time.perf_counter() - t0


def ask_all(socks: list[socket.socket], timeout: float = 30) -> tuple[int, float]:
    """Each connection sends ``GET /``: how many were answered, and when the
    last answer came."""
    t0 = time.perf_counter()
    for s in socks:
        s.setblocking(True)
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    answered, last = 0, 0.0
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        while answered < len(socks) and time.perf_counter() - t0 < timeout:
            for key, _ in sel.select(timeout=0.5):
                sel.unregister(key.fileobj)
                try:
                    head = key.fileobj.recv(64)  # type: ignore[union-attr]
                except OSError:
                    continue
                answered += head.startswith(b"HTTP/1.1 200")
                last = time.perf_counter() - t0
    return answered, last


def answer_times(url: str, n: int = 20) -> list[float | None]:
    times = []
    for _ in range(n):
        times.append(get_time(url + "/", timeout=10))
        if times[-1] is None:  # a server that stopped answering: no need to wait again
            break
    return times


def describe(times: list[float | None]) -> str:
    got = [t for t in times if t is not None]
    missing = len(times) - len(got)
    if not got:
        return "no answer"
    return (f"median {1000 * statistics.median(got):6.1f} ms, max {1000 * max(got):6.1f} ms"
            + (f", {missing} unanswered" if missing else ""))


def server_connections(pid: int) -> int:
    """Established TCP connections the server holds (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    established = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and fields[9] in inodes:
                established += 1
    return established


def idle_connections(url: str, port: int, pid: int, n: int) -> None:
    raise_file_limit(n)
    print(f"GET / with no idle connection:      {describe(answer_times(url))}")
    t0 = time.perf_counter()
    socks = open_idle(port, n)
    opened = time.perf_counter() - t0
    try:
        time.sleep(0.5)
        held = server_connections(pid)
        print(f"GET / with {len(socks)} idle connections: {describe(answer_times(url))} "
              f"(opened in {opened:.1f} s; the server holds {held})")
    finally:
        for s in socks:
            s.close()
    time.sleep(1)
    socks, took = open_burst(port, n)
    try:
        time.sleep(0.5)
        held = server_connections(pid)
        answered, last = ask_all(socks)
        print(f"{n} clients connecting at once: established in {took:.1f} s, the server holds "
              f"{held}; each then asks GET /: {answered} answered, the last after {last:.2f} s")
    finally:
        for s in socks:
            s.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bomb-mb", type=float, action="append",
                    help="compressed size of a bomb in MB (repeatable; default 1.2 and 2.1: "
                         "they inflate to about 1,240 and 2,160 MB)")
    ap.add_argument("--idle", type=int, default=2000, help="idle connections (default 2000)")
    args = ap.parse_args()
    sizes = args.bomb_mb or [1.2, 2.1]

    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_server(tmp)
        try:
            token = make_board(url, "hostile")
            api = "/api/v1/boards/hostile/jobs"
            auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            classic = {"jobix": "1"}
            get_time(url + "/")
            print(f"server pid {server.pid}, RSS {rss(server.pid) / MB:.0f} MB at rest")
            for kind, label, target, headers in (("classic", "classic /set", "/set", classic),
                                                 ("api", "API push", api, auth)):
                body, n = honest(kind, sizes[0])
                measure(url, server.pid, f"{label}, honest", target, body, headers,
                        f"{n} jobs")
                for size in sizes:
                    body, inflated = bomb_of_size(kind, size)
                    measure(url, server.pid, f"{label}, zlib bomb", target, body,
                            headers, f"{inflated / MB:,.0f} MB")
            idle_connections(url, int(url.rsplit(":", 1)[1]), server.pid, args.idle)
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
