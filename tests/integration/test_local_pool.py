"""`jobworker pool --scheduler local` against a real server: the pool's
policy with worker processes on this machine (no Slurm needed)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import start_live_server
from worker_client import Client
from worker_client.cli import main

from .test_fleet import new_board, wait_for

JOBWORKER = [sys.executable, "-m", "worker_client"]
LOCAL = ["--scheduler", "local", "--stage", "0", "--poll", "0.5"]


@pytest.fixture
def server(tmp_path):
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


def test_a_local_pool_drains_the_board_and_reports_its_allocations(server, tmp_path):
    c = new_board(server.url, "local", [0, 1, 0])
    c.push({"key": f"k{i}", "payload": {"i": i}} for i in range(40))
    p = pool(c, tmp_path, *LOCAL, "--max-allocations", "2", "--workers-per-allocation", "2",
             "--idle-exit", "1", "--output-dir", "logs", "--", "sh", "-c", "echo {key}")
    out = p.communicate(timeout=120)[0]
    assert p.returncode == 0, out
    assert c.status()["counts"] == {2: 40}
    rows = c.allocations()
    assert len(rows) == 2, rows
    assert all(r["scheduler"] == "local" and r["state"] == "ended" and r["reason"] == "COMPLETED"
               and r["started_at"] and r["ended_at"] and r["workers"] == 0 for r in rows), rows
    ids = {r["id"] for r in rows}
    assert {c.job(f"k{i}")["attempts_history"][0]["allocation"] for i in range(40)} <= ids
    assert {w["allocation"] for w in c.workers()} == ids
    assert sorted(f.name for f in (tmp_path / "logs").iterdir()) == sorted(
        f"jobworker-local-s0-{i}.out" for i in ids)
    assert "2 allocations submitted (at most 2 at once), 0 refused" in out
    assert "the last allocation gone" in out


def test_a_stopped_local_pool_gives_running_jobs_back(server, tmp_path):
    c = new_board(server.url, "stopped", [0, 1, 0])
    c.push({"key": f"k{i}", "payload": None} for i in range(3))
    p = pool(c, tmp_path, *LOCAL, "--max-allocations", "1", "--workers-per-allocation", "2",
             "--", "sleep", "60")
    wait_for(lambda: c.status()["counts"].get(1) == 2, 60, "two jobs running")
    p.send_signal(signal.SIGTERM)
    out = p.communicate(timeout=60)[0]
    assert p.returncode == 1, out
    assert "pool stopped by a signal" in out
    assert c.status()["counts"] == {0: 3}  # given back, not failed
    [row] = c.allocations()
    assert row["state"] == "ended" and row["reason"] == "CANCELLED", row
    outcomes = [a["outcome"] for k in ("k0", "k1", "k2")
                for a in c.job(k)["attempts_history"]]
    assert sorted(outcomes) == ["released", "released"]
    assert c.job("k0")["attempts"] == 0  # no attempt counted


def test_a_pool_waits_for_blocked_work_and_gets_workers_when_it_is_released(server, tmp_path):
    """Jobs at stage 2 arrive from stage 0 (run by another worker): the pool
    for stage 2 submits nothing while nothing is claimable, does not leave,
    and starts a worker once jobs arrive."""
    c = new_board(server.url, "later", [0, 1, 0, 1, 0])
    c.push({"key": f"k{i}", "payload": None} for i in range(3))
    p = pool(c, tmp_path, "--scheduler", "local", "--stage", "2", "--poll", "0.5",
             "--max-allocations", "1", "--idle-exit", "1", "--", "true")
    time.sleep(2)
    assert c.allocations() == [] and p.poll() is None
    runner = CliRunner().invoke(main, ["--url", c.url, "--board", c.board, "--token", token(c),
                                       "run", "--stage", "0", "--", "true"])
    assert runner.exit_code == 0, runner.output
    out = p.communicate(timeout=60)[0]
    assert p.returncode == 0, out
    assert c.status()["counts"] == {4: 3}
    assert len(c.allocations()) == 1


def test_a_jobs_resource_log_names_its_local_allocation(server, tmp_path):
    c = new_board(server.url, "samples", [0, 0.05, 0])  # 3 s leases: a beat every 0.75 s
    c.push([{"key": "busy", "payload": None}])
    p = pool(c, tmp_path, *LOCAL, "--max-allocations", "1", "--idle-exit", "0", "--",
             "python3", "-c", "import time\nt = time.time()\nwhile time.time() - t < 2.5: pass")
    out = p.communicate(timeout=60)[0]
    assert p.returncode == 0, out
    [row] = c.allocations()
    args = ["--url", c.url, "--board", c.board, "--token", token(c), "resources", "busy"]
    shown = CliRunner().invoke(main, args)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].startswith("job busy: ") and "of 1 attempt" in lines[0]
    assert len(lines) >= 4 and all(row["id"] in line for line in lines[2:]), lines
    csv = CliRunner().invoke(main, args + ["--csv"]).output.splitlines()
    assert csv[0].startswith("attempt_id,stage,at,host,allocation")
    assert max(float(line.split(",")[5]) for line in csv[1:]) > 30  # the loop keeps a CPU busy
