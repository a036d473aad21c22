"""Idle and slow connections against the standalone (eventlet) server
(issue 8): thousands of idle clients must not stop it answering, and idle or
stalled ones are closed after CONNECTION_TIMEOUT."""
from __future__ import annotations

import contextlib
import resource
import selectors
import socket
import subprocess
import sys
import time
from typing import Iterator

import psutil
import requests

from tests.conftest import ROOT, require, start_live_server

sys.path.insert(0, str(ROOT / "bench"))
from hostile import ask_all, open_burst  # noqa: E402  (one copy of the burst client)

IDLE = 2_000


@contextlib.contextmanager
def more_files() -> Iterator[None]:
    """Room for thousands of sockets in this process: the soft open-file
    limit raised to the hard one (put back afterwards).  Servers are started
    before, so that they must raise their own."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 16
    require(want >= IDLE + 200, f"the hard open-file limit ({hard}) leaves no room for "
                                f"{IDLE} sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_idle(port: int, n: int, connect_timeout: float = 10) -> list[socket.socket]:
    """Up to ``n`` TCP connections to the server that send nothing; fewer if
    a connection is not taken within ``connect_timeout`` (a server that
    stopped accepting)."""
    socks = []
    try:
        for _ in range(n):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=connect_timeout)
            except TimeoutError:
                break
            socks.append(s)
    except BaseException:
        close_all(socks)
        raise
    return socks


def half_requests(port: int, n: int) -> list[socket.socket]:
    """Connections that send the start of a request header, then stall."""
    socks = open_idle(port, n)
    for s in socks:
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/pl")
    return socks


def slow_bodies(port: int, n: int) -> list[socket.socket]:
    """Connections that promise a body and send a few bytes of it."""
    socks = open_idle(port, n)
    for s in socks:
        s.sendall(b"POST /set HTTP/1.1\r\nHost: 127.0.0.1\r\njobix: 1\r\n"
                  b"Content-Length: 100000\r\n\r\n{\"1\": {")
    return socks


def answered_once(port: int, n: int) -> list[socket.socket]:
    """Keep-alive connections that made one request, read the answer and
    went quiet."""
    socks = open_idle(port, n)
    for s in socks:
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while b"jobserver" not in answer:
            chunk = s.recv(65536)
            assert chunk, "closed before answering"
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")
    return socks


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


def server_connections(pid: int) -> int:
    return sum(1 for c in psutil.Process(pid).net_connections("tcp")
               if c.status == psutil.CONN_ESTABLISHED)


def timed_get(url: str, timeout: float = 20) -> tuple[float, requests.Response]:
    t0 = time.perf_counter()
    r = requests.get(url, timeout=timeout, headers={"Connection": "close"})
    return time.perf_counter() - t0, r


def test_two_thousand_idle_connections_do_not_stop_the_server(tmp_path):
    server = start_live_server(tmp_path)
    socks: list[socket.socket] = []
    try:
        with more_files():  # the server is already started: it raises its own
            before, _ = timed_get(server.url + "/")
            socks = open_idle(server.port, IDLE, connect_timeout=3)
            socks += half_requests(server.port, 20)
            # the server took them all (they are not waiting in its listen queue)
            deadline = time.monotonic() + 10
            while server_connections(server.proc.pid) < IDLE and time.monotonic() < deadline:
                time.sleep(0.2)
            held = server_connections(server.proc.pid)
            try:
                took: float | None = timed_get(server.url + "/", timeout=10)[0]
            except requests.RequestException:
                took = None
            answer = "no answer in 10 s" if took is None else f"answered in {1000 * took:.1f} ms"
            print(f"\nGET / {answer} with {len(socks)} idle connections open ({held} held by "
                  f"the server; {1000 * before:.1f} ms before)")
            assert held >= IDLE, f"the server took only {held} of {IDLE} connections"
            assert took is not None and took < 2.0
            h = {"jobix": "5"}
            requests.get(server.url + "/init/0/30/0", headers=h, timeout=10).raise_for_status()
            assert requests.get(server.url + "/get/0", headers=h, timeout=10).json() == "nada"
    finally:
        close_all(socks)
        server.stop()


def wait_closed(socks: list[socket.socket], timeout: float) -> dict[socket.socket, float]:
    """Seconds until the server closed each socket (read: EOF or reset)."""
    t0 = time.monotonic()
    closed: dict[socket.socket, float] = {}
    with selectors.DefaultSelector() as sel:
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        while len(closed) < len(socks) and time.monotonic() - t0 < timeout:
            for key, _ in sel.select(timeout=0.1):
                s = key.fileobj
                try:
                    data = s.recv(65536)  # type: ignore[union-attr]
                except ConnectionResetError:
                    data = b""
                except BlockingIOError:
                    continue
                if not data:  # an answer (a 408, a 400) may come first: read on
                    closed[s] = time.monotonic() - t0  # type: ignore[index]
                    sel.unregister(s)
    return closed


def test_idle_and_stalled_connections_are_closed_after_the_timeout(tmp_path):
    server = start_live_server(tmp_path, JOBSERVER_CONNECTION_TIMEOUT="2")
    socks: list[socket.socket] = []
    try:
        kinds = {"idle": open_idle(server.port, 5), "half a header": half_requests(server.port, 5),
                 "slow body": slow_bodies(server.port, 5),
                 "quiet after a request": answered_once(server.port, 5)}
        socks = [s for group in kinds.values() for s in group]
        t0 = time.monotonic()
        closed = wait_closed(socks, timeout=15)
        for kind, group in kinds.items():
            times = [closed.get(s) for s in group]
            print(f"\n{kind}: closed after {[None if t is None else round(t, 1) for t in times]} s")
            assert None not in times, f"{kind} connections still open after 15 s"
            assert max(t for t in times if t is not None) < 6, (kind, times)
        assert time.monotonic() - t0 < 20
        assert requests.get(server.url + "/", timeout=10).status_code == 200
        assert server.proc.poll() is None
    finally:
        close_all(socks)
        server.stop()
    log = server.log.read_text(errors="replace") if server.log else ""
    assert "Traceback" not in log, log[-4000:]


def test_a_burst_of_two_thousand_clients_is_answered(tmp_path):
    """2,000 workers connecting at the same moment, then each asking: the
    listen queue must hold them (eventlet's default of 50 left a quarter of
    them unanswered after 10 s)."""
    server = start_live_server(tmp_path)
    socks: list[socket.socket] = []
    try:
        with more_files():
            socks, _ = open_burst(server.port, IDLE)
            answered, took = ask_all(socks, timeout=20)  # what bench/hostile.py measures
            print(f"\n{answered} of {len(socks)} clients connecting at once answered in {took:.1f} s")
            assert answered == IDLE
    finally:
        close_all(socks)
        server.stop()


def test_a_second_server_on_the_same_port_fails(live_server):
    """Not a silent share of the port (SO_REUSEPORT) with a server on
    another database."""
    other = live_server.instance.parent / "other"
    other.mkdir()
    env = dict(live_server.env, JOBSERVER_INSTANCE=str(other))
    second = subprocess.Popen([sys.executable, "-m", "jobserver", "serve", "--host", "127.0.0.1",
                               "--port", str(live_server.port)], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = second.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        second.kill()
        second.communicate()
        raise AssertionError("a second server is serving the same port") from None
    assert second.returncode != 0
    assert f"cannot listen on 127.0.0.1:{live_server.port}" in out, out[-2000:]
    assert requests.get(live_server.url + "/", timeout=5).status_code == 200
