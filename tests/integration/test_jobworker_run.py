"""`jobworker run` as a real process: its output reaches the server while a
job runs, and on a terminal its status line keeps clear of log records."""
from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import requests

from worker_client import Client
from tests.conftest import ADMIN

JOBWORKER = [sys.executable, "-m", "worker_client"]


def new_board(url: str, name: str, lifetimes: list[float], max_attempts: int = 3) -> Client:
    r = requests.post(f"{url}/api/v1/boards", headers=ADMIN, json={"name": name, "lifetimes": lifetimes,
                                                    "max_attempts": max_attempts}, timeout=30)
    r.raise_for_status()
    return Client(url, name, r.json()["token"], retry_for=30)


def worker_env(client: Client) -> dict[str, str]:
    return dict(os.environ, JOBSERVER_URL=client.url, JOBSERVER_BOARD=client.board,
                JOBSERVER_TOKEN=client._session.headers["Authorization"].split()[1])


def running_log(client: Client, key: str) -> str | None:
    """The log of the job's open attempt, if the server has one."""
    job = client.job(key)
    for a in job["attempts_history"]:
        if a["ended_at"] is None and a.get("log"):
            return a["log"]
    return None


def test_log_tail_reaches_the_server_while_the_job_runs(live_server):
    client = new_board(live_server.url, "livelog", [0, 0.05, 0])  # 3 s leases: beats every 0.75 s
    client.push([{"key": "slow", "payload": None}])
    w = subprocess.Popen([*JOBWORKER, "run", "--stage", "0", "--", "sh", "-c",
                          "echo 'step 1 of 3'; echo 'warming up' >&2; sleep 60"],
                         env=worker_env(client), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        log = None
        while time.monotonic() < deadline and not (log and "warming up" in log):
            time.sleep(0.2)
            log = running_log(client, "slow")
        assert log is not None, "no log tail on the open attempt while the job runs"
        assert "step 1 of 3" in log and "warming up" in log
        job = client.job("slow")
        assert job["stage"] == 1 and job["state"] == "running"
        assert "step 1 of 3" in (job.get("log_tails") or {}).get("0", "")
    finally:
        w.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        w.send_signal(signal.SIGTERM)  # the second one stops the job and gives it back
        out = w.communicate(timeout=30)[0]
    assert w.returncode == 0, out[-2000:]


def test_log_records_do_not_glue_onto_the_status_line_of_a_terminal(live_server):
    client = new_board(live_server.url, "tty", [0, 1, 0], max_attempts=1)
    client.push([{"key": "t1", "payload": None}])
    master, slave = pty.openpty()
    w = subprocess.Popen([*JOBWORKER, "run", "--stage", "0", "--", "sh", "-c",
                          "sleep 1.5; exit 1"], env=worker_env(client), stdin=slave,
                         stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if w.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last writer has gone
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        w.wait(30)
    out = b"".join(chunks).decode(errors="replace")
    assert w.returncode == 3, out
    assert "jobs/s" in out, out  # the status line was shown
    assert re.search(r"INFO job t1 failed: exit code 1 \(for good\)", out), out
    # each record starts a line of its own, never right after the status text
    assert not re.search(r"jobs/s[^\r\n]*\d{4}-\d\d-\d\d \d\d:\d\d", out), repr(out)
    assert "done 0, failed for good 1 (1 failed attempt, 0 retried)" in out
