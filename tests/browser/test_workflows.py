"""Workflows in a real browser (issue 9): a diamond a -> {b, c} -> d and a
failed upstream job x -> y -> z pushed through the real API.  The board
page counts the blocked jobs and says when the only jobs left are stuck
behind a failure; a job page shows its upstream and downstream jobs with
their states and what blocks it, and the notes a running job wrote; the
settings page sets the board's cap on running jobs.  Screenshots go to the
artifacts folder."""
from __future__ import annotations

import pytest
import requests

from tests.conftest import ADMIN, artifacts_dir, start_live_server
from worker_client import Client

pytestmark = pytest.mark.browser

WORKFLOW = [
    {"key": "a", "payload": {"step": "prepare"}},
    {"key": "b", "payload": {"step": "left"}, "after": ["a"]},
    {"key": "c", "payload": {"step": "right"}, "after": ["a"], "priority": 5},
    {"key": "d", "payload": {"step": "join"}, "after": ["b", "c"]},
    {"key": "x", "payload": {"step": "doomed"}},
    {"key": "y", "payload": {"step": "after doomed"}, "after": ["x"]},
    {"key": "z", "payload": {"step": "after that"}, "after": ["y"]},
]


@pytest.fixture
def server(tmp_path):
    s = start_live_server(tmp_path)
    yield s
    s.stop()


def new_board(url: str, name: str) -> tuple[Client, str]:
    r = requests.post(f"{url}/api/v1/boards", headers=ADMIN, json={
        "name": name, "lifetimes": [0, 5, 0], "max_attempts": 1,
        "stage_names": ["queued", "running", "done"]})
    r.raise_for_status()
    token = r.json()["token"]
    return Client(url, name, token, retry_for=30), token


def live(page) -> None:
    page.wait_for_function("document.getElementById('conn').dataset.state === 'live'")


def notes(c: Client, token: str, attempt_id: int, items: list[dict]) -> None:
    """What a running job wrote (@event=[..] lines), as jobworker run sends it."""
    r = requests.post(f"{c.url}/api/v1/boards/{c.board}/heartbeat",
                      headers={"Authorization": f"Bearer {token}"},
                      json={"worker": c.worker, "running": [attempt_id],
                            "notes": {str(attempt_id): items}})
    r.raise_for_status()


def test_a_workflow_on_the_board_and_job_pages(server, page):
    c, token = new_board(server.url, "wf")
    c.push(WORKFLOW)
    first = c.claim(0, 10)
    assert sorted(j.key for j in first) == ["a", "x"]  # the others are blocked
    a = next(j for j in first if j.key == "a")
    x = next(j for j in first if j.key == "x")
    notes(c, token, a.attempt_id, [
        {"kind": "event", "name": "mesh", "message": "12,000 cells"},
        {"kind": "log", "message": "reading input.dat"},
        {"kind": "var", "name": "energy", "value": "-1.25"}])
    c.advance(a)
    c.fail(x, "Traceback (most recent call last):\nValueError: bad seed")

    # b and c wait; d waits for them, y for the failed x, z for y
    page.goto(f"{server.url}/boards/wf")
    live(page)
    assert page.inner_text("#blocked") == "3"
    assert page.inner_text("#waiting") == "2"
    assert "3 blocked" in page.inner_text("#funnel tr[data-stage='0']")
    assert "1 failed job(s) hold(s) up blocked jobs" in page.inner_text("#health-reason")
    page.select_option("select[name=state]", "blocked")
    page.wait_for_function("[...document.querySelectorAll('#jobs tbody td:first-child')]"
                           ".map(td => td.textContent).sort().join() === 'd,y,z'")

    page.goto(f"{server.url}/boards/wf/jobs/d")
    assert page.inner_text("#state").lower() == "blocked"
    assert page.inner_text("#blocked-by") == "blocked by: b, c"
    assert "until b, c are done" in page.inner_text("#summary")
    up = page.locator("#upstream tr")
    assert up.all_inner_texts() == ["b\tWAITING", "c\tWAITING"] or \
        [t.split() for t in up.all_inner_texts()] == [["b", "waiting"], ["c", "waiting"]]
    assert "no job waits for this one" in page.inner_text("#downstream")
    page.screenshot(path=str(artifacts_dir() / "workflow-job.png"), full_page=True)

    page.goto(f"{server.url}/boards/wf/jobs/a")
    assert [t.split()[0] for t in page.locator("#downstream tr").all_inner_texts()] == ["b", "c"]
    assert page.locator("#blocked-by").count() == 0
    rows = [t.split("\t")[1:] for t in page.locator("#notes tbody tr").all_inner_texts()]
    assert rows == [["event", "mesh", "12,000 cells"], ["log", "", "reading input.dat"],
                    ["var", "energy", "-1.25"]]
    assert "event" not in page.inner_text("#timeline")  # notes are not history
    page.screenshot(path=str(artifacts_dir() / "workflow-job-notes.png"), full_page=True)
    page.click("#downstream a:text-is('c')")
    page.wait_for_url("**/boards/wf/jobs/c")
    assert page.inner_text("#priority") == "5"

    # the diamond runs through (c first: its priority); then only y and z are
    # left, behind the failed x: stuck, and the page says so
    page.goto(f"{server.url}/boards/wf")
    live(page)
    got = c.claim(0, 10)
    assert [j.key for j in got] == ["c", "b"]
    c.advance(got)
    (d,) = c.claim(0, 10)
    assert d.key == "d"
    c.advance(d)
    page.wait_for_function("document.getElementById('done').textContent === '4'")
    page.wait_for_function("document.getElementById('blocked').textContent === '2'")
    assert page.inner_text("#health-reason") == (
        "stuck: 2 job(s) blocked behind 1 failed job(s); "
        "retry them with `jobworker retry --failed`")
    assert page.inner_text("#health").lower() == "failed"
    assert page.inner_text("#eta") == "stuck"
    page.screenshot(path=str(artifacts_dir() / "workflow-board.png"), full_page=True)

    # a retry frees them: x waits again, y and z follow once it is done
    r = requests.post(f"{server.url}/api/v1/boards/wf/retry",
                      headers={"Authorization": f"Bearer {token}"}, json={"state": "failed"})
    assert r.json() == {"retried": 1}
    page.wait_for_function("document.getElementById('failed').textContent === '0'")
    assert page.inner_text("#eta") != "stuck"
    assert page.inner_text("#blocked") == "2"


def test_the_settings_page_caps_running_jobs(server, page):
    c, token = new_board(server.url, "capped")
    c.push({"key": f"j{i}"} for i in range(10))
    page.goto(f"{server.url}/boards/capped/lifetimes")
    assert page.input_value("input[name=max_running]") == ""
    assert page.input_value("input[name=max_attempts]") == "1"
    page.fill("input[name=max_running]", "3")
    page.fill("input[name=max_attempts]", "4")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_function("document.getElementById('saved').textContent === 'saved'")
    s = c.status()
    assert (s["max_running"], s["max_attempts"]) == (3, 4)
    assert len(c.claim(0, 10)) == 3  # the cap holds
    page.reload()
    assert page.input_value("input[name=max_running]") == "3"
    page.screenshot(path=str(artifacts_dir() / "workflow-settings.png"), full_page=True)
    # a wrong token changes nothing and says why
    page.fill("input[name=max_running]", "")
    page.fill("#token", "wrong")
    page.click("button[type=submit]")
    page.wait_for_function("document.getElementById('saved').textContent.startsWith('not saved')")
    assert c.status()["max_running"] == 3
    page.goto(f"{server.url}/boards/capped")
    assert page.inner_text("#running") == "3"
    assert page.inner_text("#max-running") == " of 3 max"
    # emptied with the right token: no cap
    page.goto(f"{server.url}/boards/capped/lifetimes")
    page.fill("input[name=max_running]", "")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_function("document.getElementById('saved').textContent === 'saved'")
    assert c.status()["max_running"] is None
