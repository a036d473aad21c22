"""The worker fleet against a real server: jobworker processes, kill -9,
heartbeats, an outage, failures, SIGTERM."""
from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.conftest import ADMIN, start_live_server
from worker_client import ApiError, Client

JOBWORKER = [sys.executable, "-m", "worker_client"]


@pytest.fixture
def fleet_server(tmp_path):
    server = start_live_server(tmp_path, JOBSERVER_WORKER_LOST_AFTER="5")
    yield server
    server.stop()


def new_board(url: str, name: str, lifetimes: list[float], max_attempts: int = 3) -> Client:
    r = requests.post(f"{url}/api/v1/boards", headers=ADMIN, json={"name": name, "lifetimes": lifetimes,
                                                    "max_attempts": max_attempts})
    r.raise_for_status()
    return Client(url, name, r.json()["token"], retry_for=60)


def jobworker(client: Client, *args: str, out: Path | None = None) -> subprocess.Popen:
    env = dict(os.environ, JOBSERVER_URL=client.url, JOBSERVER_BOARD=client.board,
               JOBSERVER_TOKEN=client._session.headers["Authorization"].split()[1])
    return subprocess.Popen([*JOBWORKER, "run", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            cwd=str(out) if out else None)


def ran(log: Path) -> collections.Counter:
    return collections.Counter(log.read_text().split()) if log.exists() else collections.Counter()


def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def kill_while_holding_a_job(worker: subprocess.Popen, timeout: float = 30) -> None:
    """SIGKILL a jobworker at a moment it surely holds a claimed job.

    It is frozen first (SIGSTOP), so it cannot report anything while we look:
    a command process still in its process table (running, or exited but not
    yet reaped) is a job it has not advanced.  Otherwise it is thawed and we
    look again."""
    proc = psutil.Process(worker.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.send_signal(signal.SIGSTOP)
        if proc.children():
            worker.send_signal(signal.SIGKILL)
            worker.communicate()
            return
        worker.send_signal(signal.SIGCONT)
        time.sleep(0.005)
    raise AssertionError("the worker never held a job")


def test_two_nodes_drain_and_a_killed_one_loses_nothing(fleet_server, tmp_path):
    client = new_board(fleet_server.url, "drain", [0, 0.05, 0])  # 3 s lease at stage 1
    client.push({"key": f"k{i}", "payload": {"i": i}} for i in range(1000))
    log = tmp_path / "ran.log"
    cmd = ["--stage", "0", "--parallel", "4", "--", "sh", "-c",
           f"sleep 0.02; echo {{key}} >> {log}"]
    a, b = jobworker(client, *cmd), jobworker(client, *cmd)
    wait_for(lambda: sum(ran(log).values()) > 150, 60, "work to start")
    kill_while_holding_a_job(a)
    out_b = b.communicate(timeout=180)[0]
    assert b.returncode == 0, out_b[-2000:]
    # the killed node's jobs come back after the lease and are finished
    wait_for(lambda: client.status()["counts"].get(2) == 1000, 60, "every job done")
    s = client.status()
    assert s["counts"] == {2: 1000} and s["failed"] == 0
    counts = ran(log)
    assert set(counts) == {f"k{i}" for i in range(1000)}
    db = sqlite3.connect(fleet_server.db_path)
    lost = {k for (k,) in db.execute(
        "select jobs.key from attempts join jobs on jobs.id = attempts.job_id "
        "where attempts.outcome = 'lost'")}
    assert 1 <= len(lost) <= 4  # what the killed node held
    duplicated = {k for k, c in counts.items() if c > 1}
    assert duplicated <= lost
    for key in lost:
        outcomes = [o for (o,) in db.execute(
            "select outcome from attempts join jobs on jobs.id = attempts.job_id "
            "where jobs.key = ? order by attempts.id", (key,))]
        assert outcomes[0] == "lost" and outcomes[-1] == "advanced"
    assert any(w["state"] == "lost" for w in client.workers())


def test_heartbeating_slow_jobs_are_never_claimed_twice(fleet_server, tmp_path):
    client = new_board(fleet_server.url, "slow", [0, 0.03, 0])  # 1.8 s lifetime
    client.push({"key": f"s{i}", "payload": None} for i in range(4))
    log = tmp_path / "ran.log"
    cmd = ["--stage", "0", "--parallel", "2", "--", "sh", "-c",
           f"echo {{key}} >> {log}; sleep 5"]
    workers = [jobworker(client, *cmd), jobworker(client, *cmd)]
    for w in workers:
        out = w.communicate(timeout=120)[0]
        assert w.returncode == 0, out[-2000:]
    assert ran(log) == {f"s{i}": 1 for i in range(4)}
    assert client.status()["counts"] == {2: 4}
    for i in range(4):
        (attempt,) = client.job(f"s{i}")["attempts_history"]
        assert attempt["outcome"] == "advanced"
        # the heartbeats carried the job's resource use
        res = attempt["resources"]
        assert res["rss_bytes"] > 0 and res["runtime_s"] >= 1 and "cpu_percent" in res
    worker = client.workers()[0]
    assert worker["resources"]["host"] and worker["state"] == "stopped"  # a clean exit


def test_classic_mode_runs_against_the_classic_protocol(fleet_server, tmp_path):
    url = fleet_server.url
    requests.get(f"{url}/init/0/5/0", headers={"jobix": "31"}).raise_for_status()
    from worker_client.classic import ClassicClient

    ClassicClient(url, 31).push({i: {"jobstage": 0, "jobcmd": {"n": i}} for i in range(12)})
    log = tmp_path / "ran.log"
    env = dict(os.environ, JOBSERVER_URL=url, JOBSERVER_JOBIX="31")
    w = subprocess.run([*JOBWORKER, "run", "--classic", "--stage", "0", "--parallel", "3", "--",
                        "sh", "-c", f"echo {{payload[n]}} >> {log}"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert w.returncode == 0, w.stderr[-2000:]
    assert sorted(int(x) for x in ran(log)) == list(range(12))
    from .helpers import counts

    assert counts(url, 31) == {0: 0, 1: 0, 2: 12}


def test_workers_survive_a_twenty_second_outage(fleet_server, tmp_path):
    client = new_board(fleet_server.url, "outage", [0, 5, 0])
    client.push({"key": f"o{i}", "payload": None} for i in range(60))
    log = tmp_path / "ran.log"
    w = jobworker(client, "--stage", "0", "--parallel", "2", "--", "sh", "-c",
                  f"sleep 0.5; echo {{key}} >> {log}")
    wait_for(lambda: sum(ran(log).values()) >= 6, 30, "work to start")
    fleet_server.stop()
    time.sleep(20)
    fleet_server.start()
    out = w.communicate(timeout=180)[0]
    assert w.returncode == 0, out[-3000:]
    assert client.status()["counts"] == {2: 60}
    assert set(ran(log)) == {f"o{i}" for i in range(60)}


def test_failing_command_is_retried_then_failed_with_stderr(fleet_server):
    client = new_board(fleet_server.url, "fails", [0, 5, 0], max_attempts=2)
    client.push([{"key": "bad", "payload": {"x": 1}}, {"key": "good", "payload": {"x": 0}}])
    w = jobworker(client, "--stage", "0", "--", "sh", "-c",
                  'if [ "{payload[x]}" = 1 ]; then echo "cannot open input.dat" >&2; exit 4; fi;'
                  ' echo "wrote output.dat"')
    out = w.communicate(timeout=60)[0]
    assert w.returncode == 3, out  # a job failed for good
    assert "done 1, failed for good 1 (2 failed attempts, 1 retried)" in out
    s = client.status()
    assert s["counts"] == {2: 1} and s["failed"] == 1
    bad = client.job("bad")
    assert bad["state"] == "failed" and "cannot open input.dat" in bad["error"]
    assert [a["exit_code"] for a in bad["attempts_history"]] == [4, 4]
    assert "cannot open input.dat" in bad["log_tail"]
    assert "wrote output.dat" in client.job("good")["log_tail"]  # a success's output is kept


def test_sigterm_drains_running_jobs_and_exits_zero(fleet_server, tmp_path):
    client = new_board(fleet_server.url, "drainsig", [0, 5, 0])
    client.push({"key": f"d{i}", "payload": None} for i in range(10))
    started = tmp_path / "started.log"
    w = jobworker(client, "--stage", "0", "--parallel", "2", "--", "sh", "-c",
                  f"echo {{key}} >> {started}; sleep 2")
    wait_for(lambda: sum(ran(started).values()) >= 2, 30, "two jobs to start")
    w.send_signal(signal.SIGTERM)
    out = w.communicate(timeout=60)[0]
    assert w.returncode == 0, out
    s = client.status()
    assert s["counts"] == {0: 8, 2: 2}  # the two running finished; nothing new was claimed
    assert sum(ran(started).values()) == 2


def test_library_iterator_advances_and_fails(fleet_server):
    client = new_board(fleet_server.url, "lib", [0, 5, 0], max_attempts=1)
    client.push({"key": f"l{i}", "payload": i} for i in range(5))
    seen = []
    with pytest.raises(RuntimeError):
        with client.jobs(stage=0, batch=2) as jobs:
            for job in jobs:
                seen.append(job.key)
                if job.payload == 2:
                    raise RuntimeError("bad sample")
    assert seen == ["l0", "l1", "l2"]
    s = client.status()
    assert s["counts"] == {0: 2, 2: 2} and s["failed"] == 1  # l3 released, l4 never claimed
    assert "bad sample" in client.job("l2")["error"]
    for job in client.jobs(stage=0, batch=5):
        pass
    assert client.status()["counts"] == {2: 4}


def test_client_errors_are_clear(fleet_server):
    client = new_board(fleet_server.url, "errs", [0, 5, 0])
    bad = Client(fleet_server.url, "errs", "not-a-token")
    with pytest.raises(ApiError) as exc:
        bad.status()
    assert exc.value.status == 401
    with pytest.raises(ApiError) as exc:
        client.job("missing")
    assert exc.value.status == 404
    r = requests.post(f"{fleet_server.url}/api/v1/boards/errs/jobs", data=b"{oops",
                      headers={"Authorization": client._session.headers["Authorization"]})
    assert r.status_code == 400 and r.json()["error"] == "Bad Request"
    assert client.status()["total"] == 0
