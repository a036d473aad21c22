"""Classic workers against a real server on a free port."""
from __future__ import annotations

import collections
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
import socketio

from tests.conftest import start_live_server

from .helpers import counts, push_jobs, summary

SEED_WORKER = Path(__file__).with_name("seed_worker.py")


def run_workers(url: str, jobix: int, n: int, sleep: float = 0.0) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, str(SEED_WORKER), url, str(jobix), str(sleep)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(n)]


def claimed_ids(procs: list[subprocess.Popen]) -> list[int]:
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        ids += [int(line.split()[1]) for line in out.splitlines() if line.startswith("claimed ")]
    return ids


def test_unmodified_seed_worker_runs(live_server):
    requests.get(f"{live_server.url}/init/60/60/0", headers={"jobix": "5"}).raise_for_status()
    push_jobs(live_server.url, 5, 20)
    ids = claimed_ids(run_workers(live_server.url, 5, 1))
    assert sorted(ids) == list(range(20))
    assert counts(live_server.url, 5) == {0: 0, 1: 0, 2: 20}


def test_sixteen_concurrent_workers_no_duplicates_no_losses(live_server):
    requests.get(f"{live_server.url}/init/60/60/0", headers={"jobix": "77"}).raise_for_status()
    push_jobs(live_server.url, 77, 2000)
    push_jobs(live_server.url, 78, 50)  # another board, which must stay untouched
    ids = claimed_ids(run_workers(live_server.url, 77, 16))
    dupes = [k for k, c in collections.Counter(ids).items() if c > 1]
    assert dupes == []
    assert sorted(ids) == list(range(2000))
    assert counts(live_server.url, 77) == {0: 0, 1: 0, 2: 2000}
    assert counts(live_server.url, 78) == {0: 50}
    db = sqlite3.connect(live_server.db_path)
    (n_attempts,) = db.execute("select count(*) from attempts where outcome='advanced'").fetchone()
    assert n_attempts == 2000


def test_killed_worker_job_is_flagged_then_requeued(live_server):
    url = live_server.url
    requests.get(f"{url}/init/0/0.02/0", headers={"jobix": "9"}).raise_for_status()  # 1.2 s
    push_jobs(url, 9, 1)
    (worker,) = run_workers(url, 9, 1, sleep=600)
    deadline = time.monotonic() + 20
    while counts(url, 9).get(1) != 1:
        assert time.monotonic() < deadline, "the worker never claimed its job"
        time.sleep(0.1)
    worker.send_signal(signal.SIGKILL)
    worker.communicate()
    flagged_seen = False
    deadline = time.monotonic() + 20
    while True:
        s = summary(url, 9)
        flagged_seen |= bool(s["flagged"])
        if {st["stage"]: st["count"] for st in s["stages"]}.get(0) == 1:
            break
        assert time.monotonic() < deadline, f"job not requeued: {s}"
        time.sleep(0.05)
    db = sqlite3.connect(live_server.db_path)
    kinds = [k for (k,) in db.execute("select kind from events where job_id is not null order by id")]
    assert kinds[-2:] == ["flagged", "requeued"]
    assert db.execute("select outcome from attempts").fetchall() == [("lost",)]
    # and another worker finishes it
    assert claimed_ids(run_workers(url, 9, 1)) == [0]
    assert counts(url, 9) == {0: 0, 1: 0, 2: 1}


def test_killed_server_loses_no_accepted_job(live_server):
    push_jobs(live_server.url, 3, 500)
    live_server.proc.send_signal(signal.SIGKILL)
    live_server.proc.wait()
    live_server.start()
    assert counts(live_server.url, 3) == {0: 500}


def test_live_updates_are_coalesced(live_server):
    url, jobix = live_server.url, 11
    push_jobs(url, jobix, 2000)
    messages: list[dict] = []
    sio = socketio.Client()
    joined = threading.Event()
    sio.on("board", messages.append)
    sio.connect(url, transports=["websocket"])
    assert sio.call("join", {"jobix": jobix}) == {"ok": True}
    joined.set()

    def claim_all():
        with requests.Session() as s:
            while s.get(f"{url}/get/0", headers={"jobix": str(jobix)}).json() != "nada":
                pass

    t0 = time.monotonic()
    threads = [threading.Thread(target=claim_all) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 10  # the last emitter pass (every 0.25 s) brings 2,000
    while not (messages and messages[-1]["stages"][1]["count"] == 2000):
        assert time.monotonic() < deadline, (
            f"no update with all 2,000 claims; last: {messages[-1] if messages else None}")
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    sio.disconnect()
    # 2,000 claims; the emitter runs every 0.25 s: at most one message per pass.
    assert len(messages) <= elapsed / 0.25 + 6, (len(messages), elapsed)
    assert len(messages) < 200


def test_threading_mode_serves_workers_and_live_updates(tmp_path):
    server = start_live_server(tmp_path, JOBSERVER_ASYNC_MODE="threading")
    try:
        url = server.url
        push_jobs(url, 12, 400)
        updates: list[dict] = []
        sio = socketio.Client()
        sio.on("board", updates.append)
        sio.connect(url, transports=["websocket"])
        assert sio.call("join", {"jobix": 12}) == {"ok": True}
        ids = claimed_ids(run_workers(url, 12, 8))
        assert sorted(ids) == list(range(400))
        deadline = time.monotonic() + 5
        while not (updates and updates[-1]["done"] == 400):
            assert time.monotonic() < deadline, "no final live update over WebSocket"
            time.sleep(0.05)
        sio.disconnect()
    finally:
        server.stop()
