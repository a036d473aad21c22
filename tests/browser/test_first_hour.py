"""The pages a new user looked at in the first hour (issue 7), in a real
browser, each with a screenshot in the artifacts folder: a board whose jobs
all failed, a finished job, and the first seconds of a run."""
from __future__ import annotations

import threading
import time

import pytest
import requests

from tests.conftest import ADMIN, artifacts_dir, start_live_server
from worker_client import Client

pytestmark = pytest.mark.browser


@pytest.fixture
def server(tmp_path):
    s = start_live_server(tmp_path)
    yield s
    s.stop()


def board(url: str, name: str, max_attempts: int = 3) -> Client:
    r = requests.post(f"{url}/api/v1/boards", headers=ADMIN, json={
        "name": name, "lifetimes": [0, 5, 0], "max_attempts": max_attempts,
        "stage_names": ["queued", "running", "done"]})
    r.raise_for_status()
    return Client(url, name, r.json()["token"], retry_for=30)


def live(page) -> None:
    page.wait_for_function("document.getElementById('conn').dataset.state === 'live'")


def test_a_board_whose_jobs_all_failed_reads_failed(server, page):
    c = board(server.url, "all-fail", max_attempts=1)
    c.push({"key": f"j{i:02d}"} for i in range(12))
    for job in c.claim(0, 12):
        c.fail(job, "Traceback (most recent call last):\nFileNotFoundError: input.dat")
    page.goto(f"{server.url}/boards/all-fail")
    live(page)
    assert page.inner_text("#health") .lower() == "failed"
    assert "12 job(s) failed" in page.inner_text("#health-reason")
    assert page.inner_text("#eta") == "nothing left"
    row0 = page.inner_text("#funnel tr[data-stage='0']")
    assert "12 failed" in row0
    # a stage named after its kind reads once ("running", not "running · running")
    assert page.inner_text("#funnel tr[data-stage='1'] small") == "running"
    page.screenshot(path=str(artifacts_dir() / "first-hour-failed-board.png"), full_page=True)
    page.goto(f"{server.url}/", wait_until="domcontentloaded")
    assert page.inner_text("tr[data-board='all-fail'] .badge").lower() == "failed"


def test_a_finished_job_reads_done(server, page):
    c = board(server.url, "fin")
    c.push([{"key": "sim-1", "payload": {"seed": 1}}])
    job = c.claim(0, 1)[0]
    c.advance(job, result={"energy": -1.25}, log_tail="step 3/3\nconverged\n")
    page.goto(f"{server.url}/boards/fin/jobs/sim-1")
    assert page.inner_text("#state").lower() == "done"
    assert page.inner_text("#summary") == "done at stage 2"
    assert "converged" in page.inner_text(".log[data-stage='0']")
    assert page.inner_text("#per-stage tr[data-stage='0']").split() == ["0", "1", "1", "0", "0"]
    assert "active" not in page.inner_text("main")
    page.screenshot(path=str(artifacts_dir() / "first-hour-finished-job.png"), full_page=True)
    page.goto(f"{server.url}/boards/fin?state=done")
    page.wait_for_selector("#jobs tbody tr td:nth-child(3)")
    assert page.inner_text("#jobs tbody tr td:nth-child(3)") == "done"


def test_the_first_seconds_of_a_run_show_its_real_rate(server, page):
    c = board(server.url, "young")
    c.push({"key": f"j{i:03d}"} for i in range(600))
    stop = threading.Event()

    def work() -> None:  # about 6 jobs a second: some 360 a minute
        w = Client(c.url, c.board, c._session.headers["Authorization"].split()[1])
        while not stop.is_set():
            got = w.claim(0, 1)
            if not got:
                return
            time.sleep(0.16)
            w.advance(got)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        time.sleep(8)
        page.goto(f"{server.url}/boards/young")
        live(page)
        page.wait_for_function("Number(document.getElementById('per-minute').textContent) > 0")
        rate = float(page.inner_text("#per-minute"))
        eta = page.inner_text("#eta")
        page.screenshot(path=str(artifacts_dir() / "first-hour-young-run.png"), full_page=True)
    finally:
        stop.set()
        t.join(10)
    # the old figure divided 8 s of work by 5 minutes: about 10 a minute
    assert 150 < rate < 700, rate
    assert "h" not in eta and eta not in ("–", ""), eta  # minutes, not hours or nothing


def test_a_deleted_board_leaves_the_home_page_live(server, page):
    c = board(server.url, "scratch")
    c.push([{"key": "a"}])
    board(server.url, "keeper")
    page.goto(f"{server.url}/")
    live(page)
    page.wait_for_selector("tr[data-board='scratch']")
    token = c._session.headers["Authorization"]
    r = requests.delete(f"{server.url}/api/v1/boards/scratch", headers={"Authorization": token})
    assert r.json() == {"board": "scratch", "deleted_jobs": 1}
    page.wait_for_selector("tr[data-board='scratch']", state="detached", timeout=10000)
    assert page.locator("tr[data-board='keeper']").count() == 1
