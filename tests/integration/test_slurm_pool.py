"""`jobworker pool --scheduler slurm` on a real Slurm (the single-node one
scripts/setup.sh --test starts as root): a pool drains 200 jobs within
its maximum and leaves no allocation behind; an allocation cancelled or
killed mid-run has its jobs finished by another one; a refused submission
stops the pool after the retry limit; --dry-run's script is one sbatch
accepts.  Skipped without Slurm on a laptop, failed under CI.

The node has 2 CPUs: each allocation asks for 1."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import artifacts_dir, require, start_live_server
from worker_client import Client

from .test_fleet import new_board, wait_for

JOBWORKER = [sys.executable, "-m", "worker_client"]
POOL_ARGS = ["--scheduler", "slurm", "--stage", "0", "--cpus", "1", "--time", "00:10:00",
             "--poll", "1"]


def slurm_answers() -> bool:
    """sbatch is here and sinfo shows a node that can take work."""
    if not shutil.which("sbatch") or not shutil.which("sinfo"):
        return False
    try:
        got = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return got.returncode == 0 and any(s.strip().rstrip("*~#") in ("idle", "mix")
                                       for s in got.stdout.split())


@pytest.fixture(scope="module")
def slurm():
    require(slurm_answers(), "no Slurm here: sbatch/sinfo missing or no idle node "
                             "(scripts/setup.sh --test, as root, starts a single-node Slurm)")


@pytest.fixture
def server(slurm, tmp_path):
    # workers unheard of for 3 s are lost; leases of 6 s (lifetime 0.1 min) end quickly
    s = start_live_server(tmp_path, JOBSERVER_WORKER_LOST_AFTER="3")
    yield s
    s.stop()


def token(c: Client) -> str:
    return c._session.headers["Authorization"].split()[1]


def pool(c: Client, tmp_path: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, JOBSERVER_URL=c.url, JOBSERVER_BOARD=c.board,
               JOBSERVER_TOKEN=token(c))
    return subprocess.Popen([*JOBWORKER, "pool", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=tmp_path)


def ours(board: str) -> list[tuple[str, str]]:
    """The board's allocations Slurm holds now (pending, running, completing)."""
    got = subprocess.run(["squeue", "-h", f"--name=jobworker-{board}-s0", "-o", "%i|%T"],
                         capture_output=True, text=True, timeout=30)
    return [tuple(line.split("|")) for line in got.stdout.split()]  # type: ignore[misc]


class QueueWatch(threading.Thread):
    """Samples squeue (every 0.25 s) and the board: the most allocations at
    once, when the board was drained, when the last allocation was seen."""

    def __init__(self, c: Client, done: int) -> None:
        super().__init__(daemon=True)
        self.c, self.done = c, done
        self.peak = 0
        self.seen: set[str] = set()
        self.last_seen: float | None = None
        self.drained: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            now = ours(self.c.board)
            self.peak = max(self.peak, len(now))
            self.seen |= {i for i, _ in now}
            if now:
                self.last_seen = time.monotonic()
            if self.drained is None and self.c.status()["counts"] == {2: self.done}:
                self.drained = time.monotonic()
            self.stop.wait(0.25)


def finish(p: subprocess.Popen, timeout: float) -> str:
    try:
        return p.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)
        out = p.communicate(timeout=30)[0]
        raise AssertionError(f"the pool did not finish in {timeout} s:\n{out[-5000:]}")


def test_a_pool_drains_200_jobs_with_at_most_2_allocations_and_leaves_none(server, tmp_path):
    c = new_board(server.url, "drain", [0, 1, 0])
    t_push = time.monotonic()
    c.push({"key": f"k{i}", "payload": {"i": i}} for i in range(200))
    watch = QueueWatch(c, 200)
    watch.start()
    p = pool(c, tmp_path, *POOL_ARGS, "--max-allocations", "2", "--workers-per-allocation",
             "2", "--idle-exit", "5", "--", "sh", "-c", "sleep 0.1; echo {key}")
    out = finish(p, 300)
    t_exit = time.monotonic()
    time.sleep(0.5)
    watch.stop.set()
    watch.join(10)
    assert p.returncode == 0, out[-5000:]
    assert c.status()["counts"] == {2: 200}, out[-3000:]
    assert watch.peak == 2, (watch.peak, out[-3000:])  # never more, and both were used
    assert ours(c.board) == [], "an allocation outlived the pool"
    rows = c.allocations()
    assert {r["id"] for r in rows} == watch.seen
    assert all(r["scheduler"] == "slurm" and r["state"] == "ended" and r["workers_per_node"] == 2
               and r["reason"].startswith("COMPLETED") for r in rows), rows
    ran_on = {a["allocation"] for i in (0, 99, 199)
              for a in c.job(f"k{i}")["attempts_history"]}
    assert ran_on <= watch.seen
    assert "allocations submitted (at most 2 at once), 0 refused" in out, out[-2000:]
    figures = (f"jobs 200; allocations submitted {len(rows)}; peak allocations {watch.peak}; "
               f"push to drained {watch.drained - t_push:.1f} s; drained to last allocation "
               f"gone {watch.last_seen - watch.drained:.1f} s; pool exited "
               f"{t_exit - watch.drained:.1f} s after drained (--idle-exit 5, --poll 1)")
    (artifacts_dir() / "slurm-pool-figures.txt").write_text(figures + "\n" + out[-1500:])
    print(figures)


def running_on(c: Client, allocation: str, n: int) -> bool:
    return any(r["id"] == allocation and r["running"] >= n for r in c.allocations())


def first_running_allocation(c: Client, n: int) -> str:
    found: list[str] = []

    def one() -> bool:
        found[:] = [r["id"] for r in c.allocations() if r["running"] >= n]
        return bool(found)
    wait_for(one, 120, f"an allocation running {n} jobs")
    return found[0]


def history(c: Client, keys: list[str]) -> dict[str, list[dict]]:
    return {k: c.job(k)["attempts_history"] for k in keys}


def test_a_cancelled_allocations_jobs_are_given_back_and_finished_by_another(server,
                                                                             tmp_path):
    """scancel signals every process of the allocation: its workers stop
    claiming and its commands die; their jobs go back at once (released,
    no attempt counted) and another allocation runs them."""
    c = new_board(server.url, "scancel", [0, 0.1, 0])
    keys = [f"k{i}" for i in range(6)]
    c.push({"key": k, "payload": None} for k in keys)
    p = pool(c, tmp_path, *POOL_ARGS, "--max-allocations", "2", "--workers-per-allocation",
             "2", "--idle-exit", "5", "--", "sleep", "4")
    victim = first_running_allocation(c, 2)
    subprocess.run(["scancel", victim], check=True, timeout=30)
    out = finish(p, 240)
    assert p.returncode == 0, out[-5000:]
    assert c.status()["counts"] == {2: 6}, out[-3000:]
    rows = {r["id"]: r for r in c.allocations()}
    assert rows[victim]["state"] == "ended" and rows[victim]["reason"].startswith("CANCELLED")
    hit = {k: h for k, h in history(c, keys).items()
           if any(a["allocation"] == victim and a["outcome"] != "advanced" for a in h)}
    assert len(hit) == 2, history(c, keys)
    for k, h in hit.items():
        stopped = [a for a in h if a["allocation"] == victim]
        assert [a["outcome"] for a in stopped] == ["released"], h
        assert h[-1]["outcome"] == "advanced" and h[-1]["allocation"] != victim, h
    assert c.failures()["total"] == 0
    assert ours(c.board) == []


def test_a_killed_allocations_jobs_are_lost_requeued_and_finished_by_another(server,
                                                                            tmp_path):
    """An allocation whose processes die at once (a node failure, a kill
    after the scheduler's grace time): nobody reports its jobs; their
    leases end (6 s), the attempts are lost on record, and the jobs run
    again on another allocation."""
    c = new_board(server.url, "killed", [0, 0.1, 0])
    keys = [f"k{i}" for i in range(6)]
    c.push({"key": k, "payload": None} for k in keys)
    p = pool(c, tmp_path, *POOL_ARGS, "--max-allocations", "2", "--workers-per-allocation",
             "2", "--idle-exit", "5", "--", "sleep", "4")
    victim = first_running_allocation(c, 2)
    listed = subprocess.run(["scontrol", "listpids", victim], capture_output=True, text=True,
                            timeout=30).stdout.splitlines()[1:]  # PID JOBID STEPID ...
    pids = [line.split()[0] for line in listed if line.strip()]
    killed = 0
    for pid in pids:
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    assert killed, pids
    out = finish(p, 240)
    assert p.returncode == 0, out[-5000:]
    assert c.status()["counts"] == {2: 6}, out[-3000:]
    rows = {r["id"]: r for r in c.allocations()}
    assert rows[victim]["state"] == "ended"
    assert rows[victim]["lost_attempts"] == 2, rows[victim]
    lost = {k: h for k, h in history(c, keys).items()
            if any(a["allocation"] == victim and a["outcome"] == "lost" for a in h)}
    assert len(lost) == 2
    assert all(h[-1]["outcome"] == "advanced" and h[-1]["allocation"] != victim
               for h in lost.values())
    assert c.failures()["total"] == 0
    assert ours(c.board) == []


def test_a_refused_submission_is_reported_and_stops_the_pool_after_3(server, tmp_path):
    c = new_board(server.url, "refused", [0, 1, 0])
    c.push([{"key": "k", "payload": None}])
    t0 = time.monotonic()
    p = pool(c, tmp_path, *POOL_ARGS, "--max-allocations", "2", "--partition", "nosuchpart",
             "--", "true")
    out = finish(p, 120)
    assert p.returncode == 1, out
    assert time.monotonic() - t0 < 60
    refused = re.findall(r"sbatch refused the allocation: (.*)", out)
    assert len(refused) == 3, out
    assert "Invalid partition name specified" in refused[0], out
    assert "(1 of 3 in a row; trying again in 3 s)" in refused[0], out
    assert "(3 in a row: no more submissions)" in refused[2], out
    assert "stopped submitting: the scheduler refused 3 submissions in a row" in out
    assert c.allocations() == [] and ours(c.board) == []
    assert c.status()["counts"] == {0: 1}


def test_the_dry_run_script_is_accepted_by_sbatch_test_only(server, tmp_path):
    c = new_board(server.url, "dry", [0, 1, 0])
    p = pool(c, tmp_path, *POOL_ARGS, "--max-allocations", "2", "--workers-per-allocation",
             "2", "--mem", "100M", "--sbatch-arg=--comment=dry", "--dry-run", "--", "sh", "-c",
             "echo {key}")
    out = finish(p, 60)
    assert p.returncode == 0, out
    script = out[:out.index("(dry run")]
    assert script.startswith("#!/bin/bash\n") and token(c) not in out
    path = tmp_path / "dry.sh"
    path.write_text(script)
    got = subprocess.run(["sbatch", "--test-only", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert got.returncode == 0, got.stderr
    assert "to start at" in got.stderr
    assert ours(c.board) == [] and c.allocations() == []


def test_the_readme_cluster_example_runs_as_written(server, tmp_path):
    from tests.conftest import ROOT

    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Running on a cluster\n.*?```sh\n(.*?)```", text, re.S).group(1)
    script = block.replace("http://127.0.0.1:5000", server.url)
    script = script.replace(".venv/bin/", f"{ROOT}/.venv/bin/")
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                            env=dict(server.env), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "created 200, existing 0" in result.stdout
    assert "stage 2: 200" in result.stdout
    assert re.search(r"board sims stage 0: 200 jobs past it; 2 allocations submitted \(at most 2 "
                     r"at once\), 0 refused, 0 cancelled while queued; nothing left \d+ s after "
                     r"the start, the last allocation gone \d+ s later", result.stderr), \
        result.stderr[-2000:]
    got = subprocess.run(["sbatch", "--test-only", str(tmp_path / "pool.sbatch")],
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    assert ours("sims") == []
    print(result.stderr[-600:])
