"""`jobworker events` against a real server: lines a person reads, JSON
lines, filters, following, and one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import requests
from click.testing import CliRunner

from tests.conftest import ADMIN
from worker_client.cli import main
from worker_client.cli_events import event_line


def board(url: str, name: str) -> list[str]:
    r = requests.post(f"{url}/api/v1/boards", headers=ADMIN, timeout=30,
                      json={"name": name, "lifetimes": [0, 1, 0]})
    r.raise_for_status()
    return ["--url", url, "--board", name, "--token", r.json()["token"]]


def test_event_lines_read_as_sentences():
    at = 1_700_000_000.0
    line = event_line({"at": at, "kind": "claimed", "key": "sim/7", "stage": 0, "count": 1,
                       "detail": {"attempt": 12, "worker": "w1"}})
    assert line.endswith("claimed         sim/7  stage 0  attempt 12, worker w1")
    assert event_line({"at": at, "kind": "event", "key": "k", "stage": 0, "count": 1,
                       "detail": {"name": "checkpoint", "message": "half way"}}
                      ).endswith("event           k  stage 0  checkpoint: half way")
    assert event_line({"at": at, "kind": "worker-lost", "key": None, "stage": None,
                       "count": 1, "detail": {"worker": "node3-1"}}
                      ).endswith("worker-lost     worker node3-1")


def test_events_prints_filters_and_follows(live_server):
    args = board(live_server.url, "cli")
    runner = CliRunner()
    assert runner.invoke(main, [*args, "submit", "--key", "sim/1", "--", "true"]).exit_code == 0
    r = runner.invoke(main, [*args, "run", "--stage", "0", "--max-jobs", "1"])
    assert r.exit_code == 0, r.output
    out = runner.invoke(main, [*args, "events"]).output.splitlines()
    kinds = [line.split()[2] for line in out]
    assert kinds == ["pushed", "worker-alive", "claimed", "done", "worker-stopped"], out
    got = runner.invoke(main, [*args, "events", "sim/1", "--type", "done", "--json"])
    [done] = [json.loads(line) for line in got.output.splitlines()]
    assert done["kind"] == "done" and done["key"] == "sim/1" and done["stage"] == 2
    # --follow --after now: only what happens from now on, as it happens
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    p = subprocess.Popen([sys.executable, "-m", "worker_client", *args, "events", "--follow",
                          "--after", "now"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(1.5)
        assert runner.invoke(main, [*args, "submit", "--key", "sim/2", "--", "true"]).exit_code == 0
        line = p.stdout.readline()
        assert "pushed" in line and "sim/2" in line
    finally:
        p.terminate()
        p.communicate(timeout=10)


def test_events_errors_are_one_line(live_server):
    args = board(live_server.url, "oops")
    r = CliRunner().invoke(main, [*args, "events", "nokey"])
    assert r.exit_code == 1 and r.output.strip() == "Error: no job 'nokey' on this board"
    r = CliRunner().invoke(main, [*args, "events", "--after", "zzz"])
    assert r.exit_code == 1 and "after: 'zzz'" in r.output and "(400" in r.output
    r = CliRunner().invoke(main, ["--url", "http://127.0.0.1:1", "--board", "x", "--token", "t",
                                  "events"])
    assert r.exit_code == 1 and "cannot reach the server" in r.output
    assert "--follow" in CliRunner().invoke(main, ["events", "--help"]).output
