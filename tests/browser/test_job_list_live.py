"""/get updates live in a real browser while a worker claims jobs."""
from __future__ import annotations

import threading

import requests

from tests.conftest import artifacts_dir
from tests.integration.helpers import push_jobs

JOBIX = 21


def work(url: str, n: int) -> None:
    h = {"jobix": str(JOBIX)}
    with requests.Session() as s:
        for _ in range(n):
            job = s.get(f"{url}/get/0", headers=h).json()
            s.get(f"{url}/update_job/{job['jobid']}/2", headers=h).raise_for_status()


def test_job_list_updates_live_without_reload(live_server, page):
    url = live_server.url
    requests.get(f"{url}/init/60/60/0", headers={"jobix": str(JOBIX)}).raise_for_status()
    push_jobs(url, JOBIX, 300)
    page.goto(f"{url}/get?jobix={JOBIX}")
    page.wait_for_function("document.getElementById('conn').dataset.state === 'live'")
    assert page.inner_text("#total") == "300" and page.inner_text("#done") == "0"
    page.evaluate("window.__same_page = true")

    worker = threading.Thread(target=work, args=(url, 120))
    worker.start()
    worker.join()
    page.wait_for_function("document.getElementById('done').textContent === '120'", timeout=5000)
    assert page.evaluate("window.__same_page") is True  # updated in place, no reload
    assert page.inner_text("#progress") == "40.0"  # 120 of 300 jobs two stages up
    stage2 = page.inner_text("#stages tr[data-stage='2'] .count")
    assert stage2 == "120"
    # the job table shows the first page, refreshed live
    page.wait_for_function(
        "[...document.querySelectorAll('#jobs tbody tr td:nth-child(2)')].slice(0, 5)"
        ".every(td => td.textContent === '2')")
    assert page.locator("#jobs tbody tr").count() == 50
    page.screenshot(path=str(artifacts_dir() / "job_list.png"), full_page=True)


def test_expired_jobs_show_up_live(live_server, page):
    url = live_server.url
    h = {"jobix": str(JOBIX)}
    requests.get(f"{url}/init/0/0.01/0", headers=h).raise_for_status()  # 0.6 s at stage 1
    push_jobs(url, JOBIX, 3)
    requests.get(f"{url}/lifetime/0/0", headers=h).raise_for_status()
    page.goto(f"{url}/get?jobix={JOBIX}")
    page.wait_for_function("document.getElementById('conn').dataset.state === 'live'")
    requests.get(f"{url}/get/0", headers=h).raise_for_status()
    # the sweeper flags it, then requeues it (the expired table lists it meanwhile,
    # or the attempt count shows it came back)
    page.wait_for_function(
        "document.querySelector('#stages tr[data-stage=\"0\"] .count').textContent === '3'"
        " && document.querySelector('#stages tr[data-stage=\"1\"] .count').textContent === '0'",
        timeout=10000)
    rows = requests.get(f"{url}/get/rows", headers=h).json()["rows"]
    assert sorted(r["attempts"] for r in rows) == [0, 0, 1]


def test_home_page_lists_boards(live_server, page):
    secret = 918273645
    push_jobs(live_server.url, secret, 10)
    page.goto(live_server.url + "/")
    assert "Job lists" in page.inner_text("h1")
    assert page.locator("#boards tbody tr").count() == 1
    assert str(secret) not in page.content()  # the jobix is a secret: never shown
    page.screenshot(path=str(artifacts_dir() / "home.png"), full_page=True)
