"""`jobworker run` (without --continuous) with nothing left to claim waits for
the jobs of its stage held by lost workers to come back, and runs them
(issue 8: workers used to exit and leave such jobs waiting for nobody)."""
from __future__ import annotations

import signal
import subprocess
import time

import psutil
import pytest

from tests.conftest import start_live_server

from .test_fleet import jobworker, new_board, ran, wait_for


@pytest.fixture
def server(tmp_path):
    server = start_live_server(tmp_path, JOBSERVER_WORKER_LOST_AFTER="2")
    yield server
    server.stop()


def kill_holding(worker: subprocess.Popen, timeout: float = 30) -> None:
    """SIGKILL a jobworker once it runs a command (its job claimed), and the
    command with it (a killed node takes its processes along)."""
    proc = psutil.Process(worker.pid)
    deadline = time.monotonic() + timeout
    while not proc.children():
        assert time.monotonic() < deadline, "the worker never started a job"
        time.sleep(0.05)
    children = proc.children(recursive=True)
    worker.send_signal(signal.SIGKILL)
    worker.communicate()
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def orphaned(client) -> dict[str, int]:
    return client.status()["orphaned"]


def test_run_waits_for_jobs_of_a_lost_worker_and_finishes_them(server, tmp_path):
    client = new_board(server.url, "orphans", [0, 0.1, 0])  # 6 s lifetime at stage 1
    client.push([{"key": "held", "payload": None}, {"key": "free", "payload": None}])
    log = tmp_path / "ran.log"
    first = jobworker(client, "--stage", "0", "--", "sh", "-c", f"echo {{key}} >> {log}; sleep 60")
    kill_holding(first)
    # the killed worker is lost after 2 s of silence; its job comes back
    # 6 s after its last heartbeat
    wait_for(lambda: orphaned(client) == {"1": 1}, 30, "the killed worker to be lost")
    t0 = time.monotonic()
    second = jobworker(client, "--stage", "0", "--", "sh", "-c", f"echo {{key}} >> {log}")
    out = second.communicate(timeout=120)[0]
    took = time.monotonic() - t0
    assert second.returncode == 0, out[-3000:]
    assert "1 job held by lost workers will come back to stage 0: waiting up to 66 s" in out, out
    assert client.status()["counts"] == {2: 2}, out[-3000:]
    assert ran(log) == {"held": 2, "free": 1}  # begun by the killed worker, done by the second
    assert took < 66, took
    assert orphaned(client) == {}


def test_waiting_is_bounded_and_can_be_turned_off(server, tmp_path):
    client = new_board(server.url, "bounded", [0, 10, 0])  # the job comes back in 10 min
    client.push([{"key": "held", "payload": None}])
    first = jobworker(client, "--stage", "0", "--", "sleep", "60")
    kill_holding(first)
    wait_for(lambda: orphaned(client) == {"1": 1}, 30, "the killed worker to be lost")

    off = jobworker(client, "--stage", "0", "--wait-orphans", "0", "--", "true")
    out = off.communicate(timeout=30)[0]
    assert off.returncode == 0 and "lost workers" not in out, out

    t0 = time.monotonic()
    bounded = jobworker(client, "--stage", "0", "--wait-orphans", "3", "--", "true")
    out = bounded.communicate(timeout=60)[0]
    assert bounded.returncode == 0, out
    assert "1 job held by lost workers will come back to stage 0: waiting up to 3 s" in out
    assert "stopped waiting for jobs held by lost workers" in out
    assert 3 <= time.monotonic() - t0 < 20
    assert client.status()["counts"] == {1: 1}  # still held by the lost worker


def test_jobs_that_never_come_back_are_not_waited_for(server, tmp_path):
    client = new_board(server.url, "forever", [0, 0, 0])  # no lifetime: nothing is requeued
    client.push([{"key": "held", "payload": None}])
    kill_holding(jobworker(client, "--stage", "0", "--", "sleep", "60"))
    wait_for(lambda: any(w["state"] == "lost" for w in client.workers()), 30,
             "the killed worker to be lost")
    assert orphaned(client) == {}  # the server counts only jobs that will come back
    t0 = time.monotonic()
    w = jobworker(client, "--stage", "0", "--", "true")
    out = w.communicate(timeout=60)[0]
    assert w.returncode == 0, out
    assert "waiting up to" not in out, out
    assert time.monotonic() - t0 < 15
