"""The job page tails a running job's output live, in a real browser: lines
appear without a reload, the page says when output was dropped (a small
per-attempt bound here), and it stops when the attempt ends."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import ADMIN, ROOT, artifacts_dir, start_live_server

# 12 lines of 50 bytes at once (past the 400-byte bound: the oldest go),
# then a step a second
JOB = ("for i in 1 2 3 4 5 6 7 8 9 10 11 12; do printf 'warm-up line %02d %s\\n' $i "
       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; done; "
       "for i in 1 2 3 4 5 6; do echo \"step $i of 6\"; echo \"note $i\" >&2; sleep 1; done")


@pytest.fixture
def server(tmp_path):
    s = start_live_server(tmp_path, JOBSERVER_LOG_MAX_PER_JOB="400")
    yield s
    s.stop()


def test_the_job_page_shows_output_appearing_live(server, page):
    r = requests.post(f"{server.url}/api/v1/boards", headers=ADMIN, timeout=30,
                      json={"name": "tail", "lifetimes": [0, 0.02, 0]})  # beats every 0.5 s
    r.raise_for_status()
    token = r.json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    requests.post(f"{server.url}/api/v1/boards/tail/jobs", headers=auth, timeout=30,
                  json=[{"key": "runs/a"}]).raise_for_status()
    env = dict(os.environ, JOBSERVER_URL=server.url, JOBSERVER_BOARD="tail",
               JOBSERVER_TOKEN=token, PYTHONPATH=str(ROOT))
    worker = subprocess.Popen([sys.executable, "-m", "worker_client", "run", "--stage", "0",
                               "--", "sh", "-c", JOB], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while requests.get(f"{server.url}/api/v1/boards/tail/logs/runs/a", headers=auth,
                           timeout=30).status_code != 200:
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.1)
        page.goto(f"{server.url}/boards/tail/jobs/runs/a")
        page.evaluate("window.__same_page = true")
        log = page.locator("#live-log")
        page.wait_for_function(
            "document.getElementById('live-log').textContent.includes('step 1 of 6')",
            timeout=10_000)
        first = log.inner_text()
        assert "step 4 of 6" not in first
        assert "earlier bytes of this log were dropped]" in first  # the 400-byte bound
        assert "warm-up line 01" not in first
        page.wait_for_function(
            "document.getElementById('live-log').textContent.includes('step 4 of 6')",
            timeout=10_000)
        assert page.evaluate("window.__same_page") is True  # updated in place, no reload
        assert "running" in page.inner_text("#live-log-status")
        page.screenshot(path="/tmp/job_log.png", full_page=True)
        page.screenshot(path=str(artifacts_dir() / "job_log.png"), full_page=True)
        assert worker.wait(30) == 0
        page.wait_for_function(
            "document.getElementById('live-log-status').textContent.includes('ended')",
            timeout=10_000)
        text = log.inner_text()
        assert "step 6 of 6" in text and "note 6" in text
        # each line once, in order, whatever was dropped
        steps = [line for line in text.splitlines() if line.startswith("step ")]
        assert steps == sorted(set(steps), key=steps.index)
        # the pre sticks to the bottom while the reader has not scrolled up
        assert page.evaluate("(() => { const p = document.getElementById('live-log'); "
                             "return p.scrollHeight - p.scrollTop - p.clientHeight < 8; })()")
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait()
