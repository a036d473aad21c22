"""Long-poll claims against real `jobserver serve` processes: a claim held by
one process is woken by a push through another (PostgreSQL LISTEN/NOTIFY),
`jobworker run --continuous` waits instead of polling, and a client falls
back to polling when a server refuses "wait"."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import (ADMIN, POSTGRES_URL, _fresh_postgres, _postgres_available, require,
                            start_live_server)
from worker_client import Client
from worker_client.transport import ApiError

JOBWORKER = [sys.executable, "-m", "worker_client"]


def _board(url: str, name: str = "lp") -> Client:
    r = requests.post(f"{url}/api/v1/boards", headers=ADMIN,
                      json={"name": name, "lifetimes": [0, 1, 0]}, timeout=30)
    r.raise_for_status()
    return Client(url, name, r.json()["token"], retry_for=30)


@pytest.fixture
def two_servers(tmp_path: Path):
    require(_postgres_available(), f"no PostgreSQL at {POSTGRES_URL}")
    _fresh_postgres()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = start_live_server(tmp_path / "a", JOBSERVER_DATABASE_URL=POSTGRES_URL)
    b = start_live_server(tmp_path / "b", JOBSERVER_DATABASE_URL=POSTGRES_URL)
    yield a, b
    a.stop()
    b.stop()


def test_a_push_through_one_process_wakes_a_claim_held_by_another(two_servers):
    a, b = two_servers
    on_a = _board(a.url)
    on_b = Client(b.url, "lp", on_a._session.headers["Authorization"].split()[1])
    for round_ in range(3):  # the first wait opens A's LISTEN connection; later ones reuse it
        got: dict = {}

        def hold():
            t0 = time.monotonic()
            got["jobs"] = on_a.claim(0, wait=10)
            got["t"] = time.monotonic()
            got["held"] = got["t"] - t0

        t = threading.Thread(target=hold)
        t.start()
        time.sleep(0.7)
        assert "jobs" not in got  # held
        on_b.push([{"key": f"k{round_}", "payload": round_}])
        pushed = time.monotonic()
        t.join(15)
        assert [j.key for j in got["jobs"]] == [f"k{round_}"]
        assert got["held"] >= 0.6
        assert got["t"] - pushed < 1.0, f"woken {got['t'] - pushed:.3f} s after the push"


def test_jobworker_continuous_waits_instead_of_polling(live_server, tmp_path: Path):
    client = _board(live_server.url, "cont")
    token = client._session.headers["Authorization"].split()[1]
    env = {**os.environ, "JOBSERVER_URL": live_server.url,
           "JOBSERVER_BOARD": "cont", "JOBSERVER_TOKEN": token}
    out = open(tmp_path / "worker.log", "wb")
    w = subprocess.Popen([*JOBWORKER, "run", "--stage", "0", "--continuous", "--", "true"],
                         env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        time.sleep(3)  # idle long enough for a poller (every 2 s) to ask again
        seen = _last_seen(client)
        assert seen > 0
        time.sleep(3)
        assert _last_seen(client) == seen  # one held claim, no polling
        client.push([{"key": "now", "payload": 1}])
        pushed = time.monotonic()
        while client.job("now")["stage"] != 2:
            assert time.monotonic() - pushed < 5, "the job was not taken"
            time.sleep(0.02)
        assert time.monotonic() - pushed < 1.5
        w.send_signal(signal.SIGTERM)  # idle again, holding a claim: it stops at once
        t0 = time.monotonic()
        w.wait(10)
        assert time.monotonic() - t0 < 3
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()
        out.close()


def _last_seen(client: Client) -> float:
    """When the board last heard from its worker (each claim records it)."""
    workers = client._request("GET", "/workers")["workers"]
    return max((w["last_seen"] for w in workers), default=0.0)


def test_an_older_server_refusing_wait_is_polled(live_server, monkeypatch):
    client = _board(live_server.url, "old")
    sent: list[dict] = []
    real = client._request

    def old_server(method, path, json_body=None, **kw):
        if path == "/claim":
            sent.append(dict(json_body))
            if "wait" in json_body:
                raise ApiError(400, "Bad Request", "wait: Additional properties are not "
                                                   "allowed ('wait' was unexpected)")
        return real(method, path, json_body=json_body, **kw)

    monkeypatch.setattr(client, "_request", old_server)
    assert client.claim(0, wait=5) == []
    assert client.can_wait is False
    assert client.claim(0, wait=5) == []
    assert [("wait" in b) for b in sent] == [True, False, False]
