"""Live logs end to end: a real server (SQLite and PostgreSQL), `jobworker
run` in a process of its own, and the log read over HTTP while the job
runs, followed to its end, and with `jobworker logs`."""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from click.testing import CliRunner

from tests.conftest import (ADMIN, POSTGRES_URL, ROOT, _fresh_postgres, _postgres_available,
                            free_port, require, start_live_server)
from worker_client.cli import main

_boards = itertools.count()
# a job that prints, is silent for a while, then prints on both streams
SLOW_JOB = "echo first line; sleep 4; echo second line >&2; sleep 0.2; echo third line"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory):
    settings = {}
    if request.param == "postgresql":
        require(_postgres_available(), f"no PostgreSQL at {POSTGRES_URL}")
        _fresh_postgres()
        settings["JOBSERVER_DATABASE_URL"] = POSTGRES_URL
    s = start_live_server(tmp_path_factory.mktemp("logs"), **settings)
    yield s
    s.stop()


@pytest.fixture
def board(server):
    name = f"logs{next(_boards)}"
    # a 1.2 s lease: the worker beats every 0.5 s
    r = requests.post(f"{server.url}/api/v1/boards", headers=ADMIN, timeout=30,
                      json={"name": name, "lifetimes": [0, 0.02, 0]})
    r.raise_for_status()
    token = r.json()["token"]
    return {"url": server.url, "name": name, "token": token,
            "auth": {"Authorization": f"Bearer {token}"},
            "env": dict(os.environ, JOBSERVER_URL=server.url, JOBSERVER_BOARD=name,
                        JOBSERVER_TOKEN=token, PYTHONPATH=str(ROOT))}


def push(board, *keys):
    requests.post(f"{board['url']}/api/v1/boards/{board['name']}/jobs", headers=board["auth"],
                  json=[{"key": k} for k in keys], timeout=30).raise_for_status()


def worker(board, command: str, *options: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "worker_client", "run", "--stage", "0",
                             *options, "--", "sh", "-c", command], env=board["env"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def log_of(board, key, stream_body=False, **params):
    return requests.get(f"{board['url']}/api/v1/boards/{board['name']}/logs/{key}",
                        headers=board["auth"], params=params, timeout=30, stream=stream_body)


def wait_for(board, key, text, proc=None, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = log_of(board, key)
        if r.status_code == 200 and text in r.text:
            return r
        assert proc is None or proc.poll() is None, proc.communicate()[0]
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never showed in the log of {key}")


def test_output_is_readable_while_the_job_runs_and_whole_after(board):
    push(board, "sim/1")
    proc = worker(board, SLOW_JOB)
    try:
        r = wait_for(board, "sim/1", "first line\n", proc)
        assert proc.poll() is None  # still running: the job sleeps
        assert r.text == "first line\n"
        assert r.headers["X-Jobserver-Attempt-Running"] == "true"
        job = requests.get(f"{board['url']}/api/v1/boards/{board['name']}/jobs/sim/1",
                           headers=board["auth"], timeout=30).json()
        assert job["state"] == "running"
        assert proc.wait(30) == 0
    finally:
        stop(proc)
    r = log_of(board, "sim/1")
    assert r.headers["X-Jobserver-Attempt-Running"] == "false"
    assert sorted(r.text.splitlines()) == ["first line", "second line", "third line"]
    assert r.text.startswith("first line\n")
    assert log_of(board, "sim/1", stream="err").text == "second line\n"
    assert log_of(board, "sim/1", stream="out").text == "first line\nthird line\n"


def test_follow_streams_until_the_attempt_ends(board):
    push(board, "f")
    proc = worker(board, SLOW_JOB)
    try:
        wait_for(board, "f", "first line", proc)
        t0 = time.monotonic()
        with log_of(board, "f", stream_body=True, follow=1, stream="out") as r:
            pieces = [(time.monotonic() - t0, p) for p in r.iter_content(chunk_size=None)]
        assert proc.wait(30) == 0
    finally:
        stop(proc)
    assert b"".join(p for _, p in pieces) == b"first line\nthird line\n"
    assert pieces[0][0] < 1.0 and pieces[-1][0] > 2.0  # the first at once, the end later


def test_jobworker_logs_follow_prints_until_the_attempt_ends(board):
    push(board, "cli")
    proc = worker(board, SLOW_JOB)
    try:
        wait_for(board, "cli", "first line", proc)
        follower = subprocess.run([sys.executable, "-m", "worker_client", "logs", "--follow",
                                   "cli"], env=board["env"], cwd=ROOT, capture_output=True,
                                  text=True, timeout=60)
        assert follower.returncode == 0, follower.stderr
        assert sorted(follower.stdout.splitlines()) == ["first line", "second line",
                                                        "third line"]
        assert proc.wait(30) == 0
    finally:
        stop(proc)
    one = subprocess.run([sys.executable, "-m", "worker_client", "logs", "--stream", "err",
                          "--attempt", "1", "cli"], env=board["env"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert (one.returncode, one.stdout, one.stderr) == (0, "second line\n", "")


def test_ctrl_c_stops_following_cleanly(board):
    push(board, "long")
    proc = worker(board, "echo started; sleep 60")
    try:
        wait_for(board, "long", "started", proc)
        follower = subprocess.Popen([sys.executable, "-m", "worker_client", "logs", "-f",
                                     "long"], env=board["env"], cwd=ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert follower.stdout.readline() == "started\n"
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=10)
        assert follower.returncode == 130 and err == "" and out == ""
        assert proc.poll() is None  # the job runs on
    finally:
        requests.post(f"{board['url']}/api/v1/boards/{board['name']}/cancel",
                      headers=board["auth"], json={"keys": ["long"]}, timeout=30)
        try:
            proc.wait(30)  # the worker stops the cancelled job at its next heartbeat
        finally:
            stop(proc)


def test_jobworker_logs_errors_are_one_line(board):
    push(board, "waiting")
    base = ["--url", board["url"], "--board", board["name"], "--token", board["token"]]
    for args, message in [
            (["logs", "nope"], "Error: no job 'nope' on this board"),
            (["logs", "waiting"], "Error: job 'waiting' has not run yet: it has no attempt, "
                                  "and no log")]:
        r = CliRunner().invoke(main, [*base, *args])
        assert (r.exit_code, r.output.splitlines()) == (1, [message])
    url = f"http://127.0.0.1:{free_port()}"
    r = CliRunner().invoke(main, ["--url", url, "--board", "b", "--token", "t", "logs", "-f",
                                  "k"])
    assert r.exit_code == 1
    assert r.output.splitlines() == [f"Error: cannot reach the server at {url} (connection "
                                     f"refused): is it running? check --url/JOBSERVER_URL"]
    r = CliRunner().invoke(main, ["logs", "--help"])
    assert r.exit_code == 0 and "--follow" in r.output and "--attempt N" in r.output
