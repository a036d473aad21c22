"""Commands as jobs against a real server: `jobworker submit` pushes them
(with dependencies, priority, working directory and environment), a real
`jobworker run --stage 0` without a command runs them, and what they print
as @event/@log/@var lines ends up in the job's detail, result and page;
`jobworker retry` and `jobworker priority` as a person types them."""
from __future__ import annotations

import html
import itertools
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests
from click.testing import CliRunner

from tests.conftest import ADMIN, start_live_server
from worker_client import Client
from worker_client.cli import main

JOBWORKER = [sys.executable, "-m", "worker_client"]
_boards = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_live_server(tmp_path_factory.mktemp("commands"))
    yield s
    s.stop()


@pytest.fixture
def board(server):
    made = []

    def make(lifetimes=(0, 1, 0), max_attempts: int = 1) -> Client:
        name = f"cmd{next(_boards)}"
        r = requests.post(f"{server.url}/api/v1/boards", headers=ADMIN,
                          json={"name": name, "lifetimes": list(lifetimes),
                                "max_attempts": max_attempts}, timeout=30)
        r.raise_for_status()
        c = Client(server.url, name, r.json()["token"], retry_for=10)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def env_of(c: Client) -> dict[str, str]:
    return dict(os.environ, JOBSERVER_URL=c.url, JOBSERVER_BOARD=c.board,
                JOBSERVER_TOKEN=c._session.headers["Authorization"].split()[1])


def jobworker(c: Client, *args: str, **kw):
    """`jobworker ARGS` as a person types it (in-process)."""
    return CliRunner().invoke(main, list(args), env=env_of(c), **kw)


def run_worker(c: Client, *args: str, cwd=None, timeout: float = 60) -> subprocess.CompletedProcess:
    """A real `jobworker run` process."""
    return subprocess.run([*JOBWORKER, "run", *args], env=env_of(c), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def notes_of(job: dict) -> list[tuple]:
    out = []
    for e in job["events"]:
        if e["kind"] in ("event", "log", "var"):
            d = e["detail"]
            out.append((e["kind"], d.get("name"), d.get("message", d.get("value"))))
    return out


def page(c: Client, key: str) -> str:
    r = requests.get(f"{c.url}/boards/{c.board}/jobs/{key}", timeout=30)
    r.raise_for_status()
    return html.unescape(r.text)


def test_submitted_commands_run_in_order_and_their_notes_reach_the_job(board, tmp_path,
                                                                        monkeypatch):
    c = board()
    prep_script = ('echo "@event=[START:prep begins]"; echo "@log=[reading input]" >&2; '
                   'echo "plain output"; echo "@var=[rows:42]"; echo "@var=[unit:m/s]"')
    r = jobworker(c, "submit", "--key", "prep", "--", "sh", "-c", prep_script)
    assert r.exit_code == 0, r.output
    assert r.stdout == "prep\n"
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")  # --cwd records it
    r = jobworker(c, "submit", "--after", "prep", "--priority", "5", "--cwd", "--env",
                  "FOO=bar", "--max-attempts", "2", "--", "sh", "-c",
                  'echo "@var=[foo:$FOO]"; echo "@var=[dir:$PWD]"; '
                  'echo "@event=[DONE:sim finished]"')
    monkeypatch.chdir(tmp_path)
    assert r.exit_code == 0, r.output
    sim = r.stdout.strip()
    assert re.fullmatch(r"sh-\d{8}-\d{6}-[0-9a-f]{4}", sim)
    detail = c.job(sim)
    assert detail["state"] == "blocked" and detail["blocked_by"] == ["prep"]
    assert detail["priority"] == 5 and detail["max_attempts"] == 2

    # a submit after an unknown key: the server's one line, nothing written
    r = jobworker(c, "submit", "--key", "orphan", "--after", "no-such-job", "--", "true")
    assert r.exit_code == 1
    [line] = [x for x in r.output.splitlines() if x.strip()]
    assert line.startswith("Error: ") and "no-such-job" in line and "(400 " in line, line
    assert c.status()["total"] == 2

    done = run_worker(c, "--stage", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "done 2, failed for good 0" in done.stderr

    prep = c.job("prep")
    assert prep["state"] == "done"
    notes = notes_of(prep)  # stdout and stderr are read apart: only each one's order holds
    assert sorted(notes, key=str) == sorted([("event", "START", "prep begins"),
                                             ("log", None, "reading input"),
                                             ("var", "rows", "42"), ("var", "unit", "m/s")],
                                            key=str)
    assert [n for n in notes if n[0] != "log"] == [("event", "START", "prep begins"),
                                                   ("var", "rows", "42"), ("var", "unit", "m/s")]
    assert prep["result"] == {"rows": "42", "unit": "m/s"}
    assert "plain output" in prep["log_tail"] and "@var=[rows:42]" in prep["log_tail"]
    job = c.job(sim)
    assert job["state"] == "done"
    assert job["result"] == {"foo": "bar", "dir": str(tmp_path / "here")}
    assert [(u["key"], u["state"]) for u in job["after"]] == [("prep", "done")]
    assert ("event", "DONE", "sim finished") in notes_of(job)

    text = page(c, "prep")
    notes = text[text.index('id="notes"'):]
    for words in ("START", "prep begins", "reading input", "rows", "42", "m/s"):
        assert words in notes, words


def test_notes_arrive_while_the_job_runs(board):
    c = board(lifetimes=(0, 0.05, 0))  # 3 s leases: heartbeats every 0.75 s
    r = jobworker(c, "submit", "--key", "long", "--", "sh", "-c",
                  'echo "@event=[STEP:1 of 3]"; echo "@var=[progress:33]"; sleep 60')
    assert r.exit_code == 0, r.output
    w = subprocess.Popen([*JOBWORKER, "run", "--stage", "0"], env=env_of(c),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        seen: list = []
        while time.monotonic() < deadline and len(seen) < 2:
            time.sleep(0.2)
            seen = notes_of(c.job("long"))
        assert seen == [("event", "STEP", "1 of 3"), ("var", "progress", "33")]
        assert c.job("long")["state"] == "running"
    finally:
        w.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        w.send_signal(signal.SIGTERM)  # the second stops the job and gives it back
        out = w.communicate(timeout=30)[0]
    assert w.returncode == 0, out[-2000:]


def test_retry_failed_releases_the_blocked_downstream_job(board, tmp_path):
    c = board(max_attempts=1)
    flag = tmp_path / "fixed"
    assert jobworker(c, "submit", "--key", "up", "--", "sh", "-c",
                     f"test -e {flag}").exit_code == 0
    assert jobworker(c, "submit", "--key", "down", "--after", "up", "--",
                     "true").exit_code == 0
    first = run_worker(c, "--stage", "0")
    assert first.returncode == 3
    assert c.job("up")["state"] == "failed"
    down = c.job("down")
    assert down["state"] == "blocked" and down["blocked_by"] == ["up"]

    for args in (["retry"], ["retry", "up", "--failed"]):
        r = jobworker(c, *args)
        assert r.exit_code == 2, r.output
    r = jobworker(c, "retry", "up", "no-such-key")
    assert (r.exit_code, r.output) == (0, "retried 1 job(s) (1 of the 2 named: not failed or "
                                          "cancelled, or not on the board)\n")
    assert c.job("up")["state"] == "waiting"
    flag.touch()
    second = run_worker(c, "--stage", "0")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "done 2," in second.stderr
    assert [c.job(k)["state"] for k in ("up", "down")] == ["done", "done"]
    assert jobworker(c, "retry", "--failed").output == "retried 0 job(s)\n"


def test_priority_command_changes_the_claim_order(board):
    c = board()
    c.push([{"key": k, "payload": None} for k in ("a", "b", "c", "d")])
    r = jobworker(c, "priority", "10", "c")
    assert (r.exit_code, r.output) == (0, "set the priority of 1 job(s) to 10\n")
    r = jobworker(c, "priority", "-5", "a", "nope")
    assert r.output == ("set the priority of 1 job(s) to -5 (1 of the 2 named: not waiting "
                        "or blocked, or not on the board)\n")
    assert c.job("c")["priority"] == 10 and c.job("a")["priority"] == -5
    assert [c.claim(0, 1)[0].key for _ in range(4)] == ["c", "b", "d", "a"]
    r = jobworker(c, "priority", "3", "c")  # running now: left alone
    assert r.output.startswith("set the priority of 0 job(s) to 3")


def test_an_idle_worker_waits_for_blocked_jobs_and_a_full_cap(board, tmp_path):
    """A second worker that finds nothing to claim while the first runs the
    upstream job (or holds the board's only slot) waits, then runs the
    downstream job; a worker facing only jobs blocked behind a failure
    leaves at once."""
    c = board()
    c.patch_board(max_running=1)
    stamp = tmp_path / "up.txt"
    c.push([{"key": "up", "payload": {"command": ["sh", "-c", f"sleep 3; echo up > {stamp}"]}},
            {"key": "down", "after": ["up"],
             "payload": {"command": ["sh", "-c", f"cat {stamp}"]}}])
    first = subprocess.Popen([*JOBWORKER, "run", "--stage", "0", "--max-jobs", "1"],
                             env=env_of(c), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while c.status()["progress"]["running"] == 0 and time.time() < deadline:
        time.sleep(0.1)
    second = run_worker(c, "--stage", "0")  # starts while "up" runs and holds the slot
    assert first.wait(60) == 0
    assert second.returncode == 0, second.stderr
    assert "not claimable yet" in second.stderr
    assert c.job("down")["state"] == "done"
    assert "done 1" in second.stderr

    failing = board()
    failing.push([{"key": "bad", "payload": {"command": ["false"]}},
                  {"key": "after-bad", "after": ["bad"], "payload": {"command": ["true"]}}])
    t = time.monotonic()
    done = run_worker(failing, "--stage", "0")
    assert done.returncode == 3 and time.monotonic() - t < 30
    assert failing.job("after-bad")["state"] == "blocked"


def test_a_worker_without_a_command_on_a_board_of_data_stops_and_fails_nothing(board):
    c = board(max_attempts=3)
    c.push({"key": f"d{i}", "payload": {"n": i}} for i in range(20))
    done = run_worker(c, "--stage", "0", "--parallel", "4")
    assert done.returncode == 1
    assert "has no command of its own" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("Error: stopped: job d")
    status = c.status()
    assert status["failed"] == 0 and status["counts"] == {0: 20}
    assert all(j["attempts"] == 0 for j in c.list_jobs())
