"""The dashboard in a real browser: live progress while jobworker drains a
board, pagination and filters, job detail, a killed worker shown as lost,
and a server restart survived."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
import pytest
import requests

from tests.conftest import ADMIN, artifacts_dir, start_live_server
from worker_client import Client


@pytest.fixture
def server(tmp_path):
    s = start_live_server(tmp_path, JOBSERVER_WORKER_LOST_AFTER="30")
    yield s
    s.stop()


def board(url: str, name: str, lifetimes=(0, 5, 0), max_attempts: int = 3) -> Client:
    r = requests.post(f"{url}/api/v1/boards", headers=ADMIN, json={
        "name": name, "lifetimes": list(lifetimes), "max_attempts": max_attempts,
        "stage_names": ["queued", "running", "done"]})
    r.raise_for_status()
    return Client(url, name, r.json()["token"], retry_for=30)


def jobworker(client: Client, *cmd: str) -> subprocess.Popen:
    env = dict(os.environ, JOBSERVER_URL=client.url, JOBSERVER_BOARD=client.board,
               JOBSERVER_TOKEN=client._session.headers["Authorization"].split()[1])
    return subprocess.Popen([sys.executable, "-m", "worker_client", "run", *cmd], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def live(page) -> None:
    page.wait_for_function("document.getElementById('conn').dataset.state === 'live'")


def test_board_page_follows_a_draining_board(server, page):
    c = board(server.url, "drain")
    c.push({"key": f"job-{i:03d}", "payload": {"i": i, "bad": i % 50 == 7}} for i in range(200))
    page.goto(f"{server.url}/boards/drain")
    live(page)
    assert page.inner_text("#done") == "0" and page.inner_text("#total") == "200"
    page.evaluate("window.__same_page = true")
    w = jobworker(c, "--stage", "0", "--parallel", "4", "--", "sh", "-c",
                  'sleep 0.03; [ "{payload[bad]}" = false ]')
    # mid-run: running jobs and a throughput show up
    page.wait_for_function("Number(document.getElementById('done').textContent) > 20")
    page.wait_for_function("document.querySelectorAll('#workers tbody tr[data-worker]').length == 1")
    assert w.wait(120) == 3  # 4 jobs failed for good: jobworker says so in its exit code
    page.wait_for_function("document.getElementById('done').textContent === '196'", timeout=10000)
    page.wait_for_function("document.getElementById('failed').textContent === '4'")
    assert page.evaluate("window.__same_page") is True  # live, no reload
    assert float(page.inner_text("#per-minute")) > 0
    assert page.text_content("#health") == "failed"  # 4 failed, nothing left: never "done"
    assert page.locator("#failed-jobs tbody tr.failed").count() == 4
    assert "exit code 1" in page.inner_text("#failed-jobs")
    assert page.inner_text("#funnel tr[data-stage='2'] .count") == "196"
    page.screenshot(path=str(artifacts_dir() / "dashboard_board.png"), full_page=True)


def test_job_table_paginates_and_filters(server, page):
    c = board(server.url, "table")
    c.push({"key": f"k{i:03d}", "payload": i} for i in range(130))
    c.advance(c.claim(0, 10))
    page.goto(f"{server.url}/boards/table")
    live(page)
    first = page.locator("#jobs tbody tr td:first-child").all_inner_texts()
    assert first[0] == "k000" and len(first) == 50
    page.click("#next")
    page.wait_for_function("document.querySelector('#jobs tbody td a').textContent === 'k050'")
    assert "page=2" in page.url
    page.select_option("select[name=stage]", "2")
    page.wait_for_function("document.querySelectorAll('#jobs tbody tr').length === 10")
    assert set(page.locator("#jobs tbody tr td:nth-child(2)").all_inner_texts()) == {"2"}
    page.select_option("select[name=stage]", "")
    page.fill("input[name=key]", "k12")
    # the stage-2 table also had 10 rows (k000-k009): wait for the key filter's own rows
    page.wait_for_function("document.querySelector('#jobs tbody td a').textContent === 'k120'")
    keys = page.locator("#jobs tbody tr td:first-child").all_inner_texts()
    assert keys == [f"k12{i}" for i in range(10)]
    page.fill("input[name=key]", "")
    page.select_option("select[name=sort]", "-id")
    page.wait_for_function("document.querySelector('#jobs tbody td a').textContent === 'k129'")
    page.screenshot(path=str(artifacts_dir() / "dashboard_table.png"), full_page=True)


def test_job_detail_shows_attempts_error_and_log(server, page):
    c = board(server.url, "detail", max_attempts=2)
    c.push([{"key": "sim/42", "payload": {"input": "<script>alert(1)</script>", "n": 42}}])
    (job,) = c.claim(0)
    c.fail(job, "exit code 2: solver diverged", exit_code=2, log_tail="step 9: residual nan")
    page.goto(f"{server.url}/boards/detail")
    page.click("text=sim/42")
    page.wait_for_selector("#attempts")
    assert "solver diverged" in page.inner_text("#error")
    assert "<script>alert(1)</script>" in page.inner_text("#payload")  # shown, not run
    assert page.locator("#attempts tbody tr").count() == 1
    assert "failed" in page.inner_text("#attempts") and "2" in page.inner_text("#attempts")
    assert "residual nan" in page.inner_text(".log")
    assert "requeued" in page.inner_text("#timeline")
    page.screenshot(path=str(artifacts_dir() / "dashboard_job.png"), full_page=True)


def test_killed_worker_shows_lost_and_its_job_comes_back(server, page):
    c = board(server.url, "lost", lifetimes=(0, 0.03, 0))  # 1.8 s lease
    c.push([{"key": "long", "payload": None}])
    page.goto(f"{server.url}/boards/lost")
    live(page)
    w = jobworker(c, "--stage", "0", "--", "sleep", "60")
    page.wait_for_function("document.getElementById('running').textContent === '1'")
    children = psutil.Process(w.pid).children(recursive=True)
    w.send_signal(signal.SIGKILL)
    w.wait()
    for ch in children:
        ch.kill()
    page.wait_for_function("document.getElementById('lost').textContent === '1'", timeout=15000)
    page.wait_for_function(
        "document.querySelector('#funnel tr[data-stage=\"0\"] .count').textContent === '1'")
    assert page.locator("#workers tbody tr.lost").count() == 1
    assert page.text_content("#health") == "attention"
    page.screenshot(path=str(artifacts_dir() / "dashboard_lost.png"), full_page=True)
    attempts = c.job("long")["attempts_history"]
    assert [a["outcome"] for a in attempts] == ["lost"]


def test_page_survives_a_server_restart(server, page):
    c = board(server.url, "restart")
    c.push({"key": f"r{i}", "payload": None} for i in range(5))
    page.goto(f"{server.url}/boards/restart")
    live(page)
    server.stop()
    page.wait_for_function("document.getElementById('conn').dataset.state === 'down'")
    assert "disconnected" in page.inner_text("#conn")
    server.start()
    page.wait_for_function("document.getElementById('conn').dataset.state === 'live'",
                           timeout=20000)
    c.push({"key": f"r{i}", "payload": None} for i in range(5, 9))
    page.wait_for_function("document.getElementById('total').textContent === '9'")


def test_home_shows_health_throughput_and_links(server, page):
    c = board(server.url, "home1")
    c.push({"key": f"h{i}", "payload": None} for i in range(10))
    c.advance(c.claim(0, 4))
    other = board(server.url, "home2")
    other.push([{"key": "x", "payload": None}])
    page.goto(server.url + "/")
    row = page.locator("#boards tr[data-board='home1']")
    assert "40.0%" in row.inner_text() and "(4/10)" in row.inner_text()
    # a live update prints the figure the same way the server's render did
    page.wait_for_function("document.getElementById('conn').dataset.state === 'live'")
    c.advance(c.claim(0, 1))
    page.wait_for_function(
        "document.querySelector(\"#boards tr[data-board='home1']\").innerText.includes('(5/10)')")
    assert "50.0%" in row.inner_text()
    # updates carry only the boards that changed: the others stay, new ones appear
    assert "(0/1)" in page.inner_text("#boards tr[data-board='home2']")
    board(server.url, "home3").push([{"key": "y", "payload": None}])
    page.wait_for_selector("#boards tr[data-board='home3']")
    assert page.locator("#boards tbody tr").count() == 3
    row.locator("a").click()
    page.wait_for_selector("#funnel")
    assert "/boards/home1" in page.url
    page.goto(server.url + "/")
    page.screenshot(path=str(artifacts_dir() / "dashboard_home.png"), full_page=True)


def test_viewer_password_guards_pages(tmp_path, browser):
    s = start_live_server(tmp_path, JOBSERVER_VIEW_PASSWORD="s3cret")
    try:
        assert requests.get(s.url + "/", headers={"Accept": "text/html"}).status_code == 401
        assert requests.get(s.url + "/boards/x/jobs.json").status_code == 401
        assert requests.get(s.url + "/").status_code == 200  # scripts: the greeting
        ctx = browser.new_context(http_credentials={"username": "me", "password": "s3cret"})
        pg = ctx.new_page()
        pg.goto(s.url + "/")
        assert "Job lists" in pg.inner_text("h1")
        ctx.close()
    finally:
        s.stop()
