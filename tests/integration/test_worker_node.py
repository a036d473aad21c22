"""The worker package on a compute node: installed alone from its own
directory (the README's node recipe), with only its own dependencies and
without the server's command, it drains a board."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import requests

from tests.conftest import ADMIN, ROOT


def test_worker_installs_alone_and_drains_a_board(live_server, tmp_path):
    venv = tmp_path / "node"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # the README's recipe for a node: one pip install of the worker's directory (a copy,
    # so that setuptools' in-tree build leaves nothing in the checkout)
    source = tmp_path / "checkout" / "worker_client"
    shutil.copytree(ROOT / "worker_client", source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    done = subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check",
                           str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ERROR" not in done.stderr and "conflict" not in done.stderr.lower(), done.stderr
    installed = subprocess.run([python, "-m", "pip", "list", "--format=freeze",
                                "--disable-pip-version-check"],
                               capture_output=True, text=True, check=True).stdout.lower()
    assert "jobworker==" in installed and "flask" not in installed, installed
    assert not (venv / "bin" / "jobserver").exists(), "the node must not get a jobserver command"
    for module in ("flask", "jobserver"):
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True,
                               cwd=tmp_path)
        assert probe.returncode != 0, f"the node venv should not have {module}"

    jobworker = str(venv / "bin" / "jobworker")
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    helped = subprocess.run([jobworker, "--help"], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert helped.returncode == 0 and "watch" in helped.stdout, helped.stderr

    r = requests.post(f"{live_server.url}/api/v1/boards", headers=ADMIN,
                      json={"name": "node", "lifetimes": [0, 5, 0]})
    r.raise_for_status()
    env.update(JOBSERVER_URL=live_server.url, JOBSERVER_BOARD="node",
               JOBSERVER_TOKEN=r.json()["token"])
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(f'{{"key": "n{i}", "payload": {i}}}\n' for i in range(20)))
    for args in (["push", str(jobs)], ["run", "--stage", "0", "--parallel", "2", "--", "true"]):
        done = subprocess.run([jobworker, *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
    status = subprocess.run([jobworker, "status"], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert "stage 2: 20" in status.stdout, status.stdout
