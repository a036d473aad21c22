"""Scale-out under real nginx (Debian's package): three `jobserver serve`
processes on one PostgreSQL database, Redis as the Socket.IO message queue,
and deploy/nginx-jobserver.conf.example in front (its ports and listen line
replaced).  64 workers drain 20,000 jobs through nginx while one server
process is SIGKILLed; a live page through nginx sees the board throughout.

Run as a script (``python tests/integration/test_nginx.py URL BOARD TOKEN
THREADS SINGLES``), this file is one worker process: THREADS worker threads,
of which SINGLES claim one job at a time and the rest batches; it prints one
JSON line of what each thread claimed and reported.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NGINX = "/usr/sbin/nginx"
REDIS_URL = "redis://127.0.0.1:6379/14"
EXAMPLE = ROOT / "deploy" / "nginx-jobserver.conf.example"
N_JOBS = 20_000
WORKER_PROCS = 4
THREADS = 16  # per worker process: 64 workers
SINGLES = 4  # of them claim one job at a time (16 in all); the rest batches
BATCH = 20
LIFETIME_MIN = 0.15  # the running stage's lifetime: 9 s, then a lost claim is requeued


# ------------------------------------------------------------ the workers


def _worker_thread(url: str, board: str, token: str, n: int, out: list) -> None:
    from worker_client import ApiError, Client

    c = Client(url, board, token, timeout=30, retry_for=120)
    idle_since = None
    while True:
        jobs = c.claim(0, n)
        if not jobs:
            if c.status()["counts"].get(2) == N_JOBS:
                return
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 120:
                raise RuntimeError("no job to claim for 2 minutes and the board is not done")
            time.sleep(0.3)
            continue
        idle_since = None
        out.extend(("claimed", j.key, j.attempt_id) for j in jobs)
        try:
            c.advance(jobs)
            out.extend(("advanced", j.key, j.attempt_id) for j in jobs)
        except ApiError as exc:  # e.g. an attempt already requeued: say so, carry on
            out.extend(("refused", j.key, j.attempt_id, exc.status) for j in jobs)


def worker_main(url: str, board: str, token: str, threads: int, singles: int) -> None:
    results: list[list] = [[] for _ in range(threads)]
    errors: list[str] = []

    def run(i: int) -> None:
        try:
            _worker_thread(url, board, token, 1 if i < singles else BATCH, results[i])
        except Exception as exc:  # reported, and the process exits non-zero
            errors.append(repr(exc))

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(json.dumps({"records": [r for rs in results for r in rs], "errors": errors}))
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    worker_main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))


# ------------------------------------------------------------ the test

import collections  # noqa: E402
import getpass  # noqa: E402

import pytest  # noqa: E402
import requests  # noqa: E402
import socketio  # noqa: E402

from tests.conftest import (ADMIN, ADMIN_TOKEN, POSTGRES_URL, _postgres_available,  # noqa: E402
                            _spawn, artifacts_dir, free_port, require, wait_until_up)

DB_NAME = "jobserver_nginx_test"

MAIN_CONF = """
daemon off;
worker_processes 1;
user {user};  # as root too: the temp paths below are this user's
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    # which process answered (the test kills the one its live page is on)
    add_header X-Upstream $upstream_addr always;
    include {tmp}/jobserver.conf;
}}
"""


def _redis_available() -> bool:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        return True
    except ImportError:
        return False
    except Exception:
        return False


def _pg(dbname: str):
    import psycopg

    base = POSTGRES_URL.replace("postgresql+psycopg", "postgresql")
    return psycopg.connect(base.rsplit("/", 1)[0] + "/" + dbname, autocommit=True)


def _fresh_database() -> str:
    """A database of this test's own (the suite's `test` database is
    recreated by other tests' fixtures)."""
    with _pg("postgres") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + DB_NAME


def nginx_conf(listen: int, ports: list[int]) -> str:
    """The example configuration with this run's ports."""
    text = EXAMPLE.read_text()
    for example, port in zip((5001, 5002, 5003), ports):
        text = text.replace(f"127.0.0.1:{example}", f"127.0.0.1:{port}")
    text, n = re.subn(r"listen 80;", f"listen 127.0.0.1:{listen};", text)
    assert n == 1
    return text


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.servers: dict[int, subprocess.Popen] = {}
        self.nginx: subprocess.Popen | None = None
        self.url = ""

    def start(self, db_url: str) -> None:
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
        instance = self.tmp / "instance"
        instance.mkdir()
        env = dict(os.environ, JOBSERVER_INSTANCE=str(instance), JOBSERVER_DATABASE_URL=db_url,
                   JOBSERVER_MESSAGE_QUEUE=REDIS_URL, JOBSERVER_SWEEP_INTERVAL="1",
                   JOBSERVER_LIVE_INTERVAL="0.25", JOBSERVER_ADMIN_TOKEN=ADMIN_TOKEN,
                   JOBSERVER_NAME_SECRET="nginx-test-secret")
        for i in range(3):  # one after the other: the first migrates the database
            port = free_port()
            self.servers[port] = _spawn(port, env, self.tmp / f"server-{i}.log")
            wait_until_up(f"http://127.0.0.1:{port}", self.servers[port], timeout=60)
        listen = free_port()
        (self.tmp / "jobserver.conf").write_text(nginx_conf(listen, list(self.servers)))
        (self.tmp / "nginx.conf").write_text(MAIN_CONF.format(tmp=self.tmp, user=getpass.getuser()))
        self.nginx = subprocess.Popen([NGINX, "-c", str(self.tmp / "nginx.conf"),
                                       "-p", str(self.tmp), "-e", str(self.tmp / "error.log")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{listen}"
        wait_until_up(self.url, self.nginx, timeout=30)

    def stop(self) -> None:
        procs = list(self.servers.values()) + ([self.nginx] if self.nginx else [])
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        arts = artifacts_dir()
        for log in self.tmp.glob("*.log"):
            (arts / f"nginx-test-{log.name}").write_bytes(log.read_bytes())


@pytest.fixture
def stack(tmp_path):
    require(os.path.exists(NGINX), f"{NGINX} is missing (apt-get install nginx)")
    require(_postgres_available(), f"no PostgreSQL at {POSTGRES_URL}")
    try:
        import redis  # noqa: F401
    except ImportError:
        require(False, "the redis package is missing (pip install -e '.[scale]')")
    require(_redis_available(), f"no Redis at {REDIS_URL}")
    s = Stack(tmp_path)
    try:
        s.start(_fresh_database())
        yield s
    finally:
        s.stop()
        with _pg("postgres") as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


class LivePage:
    """What a dashboard page does: connect through nginx, join the board on
    every (re)connect, keep every update with its arrival time."""

    def __init__(self, url: str, board: str) -> None:
        self.updates: list[tuple[float, dict]] = []
        self.connects = 0
        self.sio = socketio.Client(reconnection_delay=0.5, reconnection_delay_max=2)

        @self.sio.on("connect")
        def _connect() -> None:
            self.connects += 1
            self.sio.emit("join", {"board": board})

        @self.sio.on("dashboard")
        def _update(d: dict) -> None:
            self.updates.append((time.monotonic(), d))

        self.sio.connect(url)  # long-polling first, then the WebSocket upgrade

    def done(self) -> int:
        return self.updates[-1][1]["done"] if self.updates else 0


def test_three_processes_behind_nginx_one_killed_mid_run(stack):
    url = stack.url
    r = requests.post(f"{url}/api/v1/boards", headers=ADMIN,
                      json={"name": "fleet", "lifetimes": [0, LIFETIME_MIN, 0]})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    jobs = [{"key": f"k{i}", "payload": i} for i in range(N_JOBS)]
    r = requests.post(f"{url}/api/v1/boards/fleet/jobs", json=jobs, headers=auth, timeout=120)
    assert r.json()["created"] == N_JOBS, r.text

    page = LivePage(url, "fleet")
    # the process the page is on (the same client address sticks to it)
    page_port = int(requests.get(f"{url}/socket.io/?EIO=4&transport=polling")
                    .headers["X-Upstream"].rsplit(":", 1)[1])
    assert page_port in stack.servers
    time.sleep(1)
    assert page.sio.transport() == "websocket", "the WebSocket upgrade did not pass nginx"

    t0 = time.monotonic()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    workers = [subprocess.Popen([sys.executable, __file__, url, "fleet", token, str(THREADS),
                                 str(SINGLES)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env, cwd=ROOT)
               for _ in range(WORKER_PROCS)]
    try:
        # kill the process the live page is on, a third of the way through
        deadline = time.monotonic() + 180
        while page.done() < N_JOBS // 3:
            assert time.monotonic() < deadline, f"a third not done in 3 minutes: {page.done()}"
            assert all(w.poll() is None for w in workers), "a worker process ended early"
            time.sleep(0.05)
        killed_at, t_kill = time.time(), time.monotonic()
        done_at_kill = page.done()
        stack.servers[page_port].send_signal(signal.SIGKILL)
        stack.servers[page_port].wait()

        outs = [w.communicate(timeout=300) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    took = time.monotonic() - t0
    for w, (out, err) in zip(workers, outs):
        assert w.returncode == 0, err[-3000:]
    records = [tuple(r) for out, _ in outs for r in json.loads(out)["records"]]

    # 0 lost: every job at the last stage, advanced exactly once
    status = requests.get(f"{url}/api/v1/boards/fleet", headers=auth).json()
    assert status["counts"] == {"2": N_JOBS}, status
    with _pg(DB_NAME) as conn:
        rows = conn.execute("SELECT j.key, a.id, a.outcome, a.started_at FROM attempts a "
                            "JOIN jobs j ON j.id = a.job_id").fetchall()
    attempts = collections.defaultdict(list)
    for key, aid, outcome, started in rows:
        attempts[key].append((aid, outcome, started))
    assert len(attempts) == N_JOBS
    assert all(sum(o == "advanced" for _, o, _ in a) == 1 for a in attempts.values())
    # every other attempt was lost, and started before the kill (the claims
    # whose answers died with the process)
    lost = {aid: (key, started) for key, a in attempts.items() for aid, o, started in a
            if o != "advanced"}
    assert {o for a in attempts.values() for _, o, _ in a} <= {"advanced", "lost"}
    assert all(started <= killed_at + 1 for _, started in lost.values()), lost
    lost_keys = {key for key, _ in lost.values()}

    # duplicates only for jobs whose attempt was lost
    claimed = collections.Counter(r[1] for r in records if r[0] == "claimed")
    twice = {k for k, c in claimed.items() if c > 1}
    assert twice <= lost_keys, twice - lost_keys
    assert set(claimed) == set(attempts)  # a claim answered is a claim recorded
    refused = {r[2] for r in records if r[0] == "refused"}
    assert refused <= set(lost), refused - set(lost)

    # the page stayed live: updates before and after the kill, no long gap,
    # and the last one shows the board done
    deadline = time.monotonic() + 10
    while page.done() < N_JOBS and time.monotonic() < deadline:
        time.sleep(0.1)
    times = [t for t, _ in page.updates if t >= t0]
    gaps = [b - a for a, b in zip(times, times[1:])]
    after_kill = [t for t in times if t > t_kill]
    try:
        assert page.done() == N_JOBS, page.updates[-1][1]
        assert len(after_kill) >= 3 and page.connects >= 2
        # (the reconnection through nginx after the kill makes the longest
        # gap: 2-3 s on a quiet day, 4-9 s on a day when this 2-core machine
        # ran everything three times slower, at this change and before it)
        assert max(gaps) < 15, f"the page went {max(gaps):.1f} s without an update"
    finally:
        page.sio.disconnect()

    report = (f"nginx + 3 jobserver processes (PostgreSQL, Redis): {N_JOBS} jobs, "
              f"{WORKER_PROCS * THREADS} workers ({WORKER_PROCS * SINGLES} single, rest batches "
              f"of {BATCH}) in {took:.1f} s = {N_JOBS / took:.0f} jobs/s; {len(lost)} claims lost "
              f"with the killed process (requeued after 9 s); killed port {page_port} at "
              f"{done_at_kill} done; page: {len(times)} updates, {page.connects} connects, "
              f"longest gap {max(gaps):.1f} s")
    print(report)
    (artifacts_dir() / "nginx-run.txt").write_text(report + "\n")
