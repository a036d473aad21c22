"""The worker's side of pools: `jobworker run --idle-exit`, jobs given back
when the scheduler ends an allocation, the allocation on claims and
heartbeats, and `jobworker resources` (against a real server)."""
from __future__ import annotations

import itertools
import logging
import signal
import threading
import time

import psutil
import pytest
import requests
from click.testing import CliRunner

from tests.conftest import ADMIN, start_live_server
from worker_client import Client
from worker_client.cli import main
from worker_client.client import Job, default_allocation
from worker_client.runner import Runner, RunOptions
from worker_client.sources import Orphans

_boards = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_live_server(tmp_path_factory.mktemp("poolworker"))
    yield s
    s.stop()


def board(server, lifetimes=(0, 1, 0), allocation=None) -> Client:
    name = f"pw{next(_boards)}"
    r = requests.post(f"{server.url}/api/v1/boards", headers=ADMIN,
                      json={"name": name, "lifetimes": list(lifetimes)}, timeout=30)
    r.raise_for_status()
    return Client(server.url, name, r.json()["token"], retry_for=10, allocation=allocation)


def token(c: Client) -> str:
    return c._session.headers["Authorization"].split()[1]


class FakeSource:
    """Hands out ``jobs`` (one list per claim), records what is reported."""
    heartbeat_every = 0.2

    def __init__(self, *batches: list[Job]) -> None:
        self.batches = list(batches)
        self.claims = 0
        self.done_keys: list[str] = []
        self.failed_keys: list[str] = []
        self.released_keys: list[str] = []

    def claim(self, n):
        self.claims += 1
        return self.batches.pop(0) if self.batches else []

    def orphans(self):
        return Orphans(0, 0, None)

    def held_back(self):
        return 0

    def done(self, job, log_tail, result=None):
        self.done_keys.append(job.key)

    def failed(self, job, error, exit_code, log_tail):
        self.failed_keys.append(job.key)
        return "requeued"

    def release(self, jobs):
        self.released_keys += [j.key for j in jobs]

    def heartbeat(self, samples, logs, notes=None):
        return set()

    def goodbye(self):
        pass


# ------------------------------------------------------------- --idle-exit


def test_idle_exit_waits_that_long_for_work_then_leaves(caplog):
    caplog.set_level(logging.INFO)
    source = FakeSource()
    opts = RunOptions(stage=0, command=["true"], idle_exit=1.5, poll_max=0.2)
    t0 = time.monotonic()
    Runner(source, opts, tty=False).run()
    took = time.monotonic() - t0
    assert 1.5 <= took < 4, took
    assert source.claims > 2  # it kept looking
    assert "s: leaving (--idle-exit)" in caplog.text


def test_idle_exit_counts_from_the_last_job_not_from_the_start():
    late = [Job("late", None, 0, attempt_id=1)]
    source = FakeSource([], [], [], late)  # work arrives on the fourth look
    opts = RunOptions(stage=0, command=["sleep", "1"], idle_exit=1.0, poll_max=0.2)
    t0 = time.monotonic()
    Runner(source, opts, tty=False).run()
    assert source.done_keys == ["late"]
    assert time.monotonic() - t0 >= 2.0  # the job's second, then a second without work


def test_run_idle_exit_through_the_cli_on_an_empty_board(server):
    c = board(server)
    t0 = time.monotonic()
    r = CliRunner().invoke(main, ["--url", c.url, "--board", c.board, "--token", token(c),
                                  "run", "--stage", "0", "--idle-exit", "1", "--", "true"])
    assert r.exit_code == 0, r.output
    assert 1 <= time.monotonic() - t0 < 10
    r = CliRunner().invoke(main, ["run", "--help"])
    assert "--idle-exit SECONDS" in r.output


# ---------------------------------------------- the scheduler ends the allocation


def test_a_command_killed_with_its_stopping_worker_is_given_back_not_failed():
    """Slurm's scancel or time limit signals every process of the
    allocation: the worker (which stops claiming) and its commands."""
    source = FakeSource([Job("long", None, 0, attempt_id=7), Job("other", None, 0,
                                                                  attempt_id=8)])
    opts = RunOptions(stage=0, command=["sleep", "30"], parallel=2)
    runner = Runner(source, opts, tty=False)
    t = threading.Thread(target=runner.run)
    t.start()
    deadline = time.monotonic() + 10
    while len(psutil.Process().children(recursive=True)) < 2:
        assert time.monotonic() < deadline, "the commands never started"
        time.sleep(0.05)
    runner._on_signal(signal.SIGTERM, None)  # what the worker gets
    for child in psutil.Process().children(recursive=True):  # what its commands get
        if child.name() == "sleep":
            child.terminate()
    t.join(15)
    assert not t.is_alive()
    assert sorted(source.released_keys) == ["long", "other"] and source.failed_keys == []


def test_a_command_killed_just_before_its_worker_hears_the_signal_is_given_back():
    """The scheduler's signal may reach a command, and the command's end the
    worker's job thread, before the main thread has run the worker's own
    handler (a CI run failed this way): the job waits a moment for it."""
    source = FakeSource([Job("first", None, 0, attempt_id=5)])
    runner = Runner(source, RunOptions(stage=0, command=["sleep", "30"]), tty=False)
    t = threading.Thread(target=runner.run)
    t.start()
    deadline = time.monotonic() + 10
    while not (sleeps := [p for p in psutil.Process().children(recursive=True)
                          if p.name() == "sleep"]):
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)
    sleeps[0].terminate()
    time.sleep(0.3)
    runner._on_signal(signal.SIGTERM, None)
    t.join(15)
    assert not t.is_alive()
    assert source.released_keys == ["first"] and source.failed_keys == []


def test_a_command_that_fails_by_itself_is_still_a_failure():
    source = FakeSource([Job("bad", None, 0, attempt_id=9)])
    opts = RunOptions(stage=0, command=["sh", "-c", "kill -TERM $$"])
    Runner(source, opts, tty=False).run()
    assert source.failed_keys == ["bad"] and source.released_keys == []


# --------------------------------------------------------- the allocation


def test_the_allocation_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("JOBSERVER_ALLOCATION", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert default_allocation() is None
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert default_allocation() == "4242"
    monkeypatch.setenv("JOBSERVER_ALLOCATION", "local-vm-1-2")
    assert default_allocation() == "local-vm-1-2"
    monkeypatch.setenv("JOBSERVER_ALLOCATION", "not one/of ours")
    assert default_allocation() == "4242"  # the bad one is left out, with a warning


def test_claims_and_heartbeats_carry_the_allocation(server, monkeypatch):
    c = board(server, allocation="4242")
    c.push([{"key": "a", "payload": None}])
    [job] = c.claim(0)
    c.heartbeat(samples={job.attempt_id: {"host": "node7", "pid": 1, "cpu_percent": 97.5,
                                          "rss_bytes": 3 << 20, "runtime_s": 12.0}})
    assert [w["allocation"] for w in c.workers()] == ["4242"]
    assert c.job("a")["attempts_history"][-1]["allocation"] == "4242"
    c.advance(job)
    lines = CliRunner().invoke(main, ["--url", c.url, "--board", c.board, "--token", token(c),
                                      "workers"]).output.splitlines()
    assert "ALLOCATION" in lines[0] and "4242" in lines[1]
    shown = CliRunner().invoke(main, ["--url", c.url, "--board", c.board, "--token", token(c),
                                      "job", "a"]).output
    assert "allocation 4242" in shown


def test_resources_prints_a_jobs_samples_over_time_and_as_csv(server):
    c = board(server, allocation="77")
    c.push([{"key": "sim/1", "payload": None}])
    [job] = c.claim(0)
    for i, cpu in enumerate((50.0, 99.5)):
        c.heartbeat(samples={job.attempt_id: {"host": "node3", "pid": 10, "cpu_percent": cpu,
                                              "rss_bytes": (i + 1) << 20,
                                              "runtime_s": 5.0 * (i + 1)}})
    args = ["--url", c.url, "--board", c.board, "--token", token(c), "resources", "sim/1"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    out = r.output.splitlines()
    assert out[0] == "job sim/1: 2 samples of 1 attempt"
    assert out[1].split() == ["TIME", "ATTEMPT", "STAGE", "HOST", "ALLOCATION", "CPU", "RSS",
                              "RUN", "TIME"]
    assert out[2].split()[2:] == [str(job.attempt_id), "0", "node3", "77", "50%", "1.0",
                                  "MB", "5", "s"]
    assert "100%" in out[3] and "2.0 MB" in out[3] and "10 s" in out[3]
    csv = CliRunner().invoke(main, args + ["--csv"]).output.splitlines()
    assert csv[0] == "attempt_id,stage,at,host,allocation,cpu_percent,rss_bytes,runtime_s"
    assert csv[2].startswith(f"{job.attempt_id},0,") and csv[2].endswith(
        ",node3,77,99.5,2097152,10.0")
    none = CliRunner().invoke(main, args[:-1] + ["nope"])
    assert none.exit_code == 1 and "nope" in none.output
