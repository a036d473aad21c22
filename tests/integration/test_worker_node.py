"""The worker package on a compute node: installed without the server's
dependencies (the README's node recipe), it drains a board."""
from __future__ import annotations

import os
import subprocess
import sys

import requests

from tests.conftest import ROOT


def test_worker_installs_and_runs_without_the_server_dependencies(live_server, tmp_path):
    venv = tmp_path / "node"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
           "--disable-pip-version-check"]
    # the README's recipe for a node: the package alone, then the worker's own needs
    subprocess.run([*pip, "--no-deps", str(ROOT)], check=True, capture_output=True)
    subprocess.run([*pip, "requests", "psutil", "click"], check=True, capture_output=True)
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import flask"],
                           capture_output=True, text=True)
    assert probe.returncode != 0, "the node venv should not have the server's dependencies"

    r = requests.post(f"{live_server.url}/api/v1/boards",
                      json={"name": "node", "lifetimes": [0, 5, 0]})
    r.raise_for_status()
    env = dict(os.environ, JOBSERVER_URL=live_server.url, JOBSERVER_BOARD="node",
               JOBSERVER_TOKEN=r.json()["token"])
    env.pop("PYTHONPATH", None)
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(f'{{"key": "n{i}", "payload": {i}}}\n' for i in range(20)))
    jobworker = str(venv / "bin" / "jobworker")
    for args in (["push", str(jobs)], ["run", "--stage", "0", "--parallel", "2", "--", "true"]):
        done = subprocess.run([jobworker, *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
    status = subprocess.run([jobworker, "status"], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert "stage 2: 20" in status.stdout, status.stdout
