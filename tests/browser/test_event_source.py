"""The event stream in a real browser: chromium's EventSource reconnects
after each end of the stream (SSE_MAX_SECONDS) with Last-Event-ID, and
the page sees every event once, in order."""
from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import ADMIN, start_live_server


@pytest.fixture
def server(tmp_path):
    s = start_live_server(tmp_path, JOBSERVER_SSE_MAX_SECONDS="1.5",
                          JOBSERVER_SSE_HEARTBEAT="0.5")
    yield s
    s.stop()


def test_event_source_resumes_with_last_event_id(server, page):
    r = requests.post(f"{server.url}/api/v1/boards", headers=ADMIN, timeout=30,
                      json={"name": "browser", "lifetimes": [0, 1, 0]})
    auth = {"Authorization": f"Bearer {r.json()['token']}"}
    page.goto(f"{server.url}/boards/browser")
    page.evaluate("""() => {
        window.got = []; window.opens = 0;
        const es = new EventSource('/boards/browser/events/stream?types=pushed');
        es.onopen = () => { window.opens += 1; };
        es.onmessage = (m) => window.got.push([m.lastEventId, JSON.parse(m.data).key]);
        window.es = es;
    }""")
    keys = []
    for round_ in range(4):  # pushes spread over several ends of the stream
        batch = [f"r{round_}-{i}" for i in range(5)]
        requests.post(f"{server.url}/api/v1/boards/browser/jobs", headers=auth, timeout=30,
                      json=[{"key": k, "payload": None} for k in batch]).raise_for_status()
        keys += batch
        time.sleep(1.2)
    page.wait_for_function(f"window.got.length >= {len(keys)}", timeout=15000)
    time.sleep(2)  # one more reconnection: nothing may come twice
    got = page.evaluate("window.got")
    assert [k for _, k in got] == keys
    assert len({i for i, _ in got}) == len(keys)
    assert page.evaluate("window.opens") >= 2  # it reconnected (retry: 2 s) and resumed
    page.evaluate("window.es.close()")


def test_the_job_page_history_follows_the_job_live(server, page):
    r = requests.post(f"{server.url}/api/v1/boards", headers=ADMIN, timeout=30,
                      json={"name": "story", "lifetimes": [0, 1, 0]})
    auth = {"Authorization": f"Bearer {r.json()['token']}"}
    api = f"{server.url}/api/v1/boards/story"
    requests.post(f"{api}/jobs", headers=auth, timeout=30,
                  json=[{"key": "sim/1", "payload": None}]).raise_for_status()
    page.goto(f"{server.url}/boards/story/jobs/sim/1")
    rows = "document.querySelectorAll('#timeline tbody tr[data-cursor]')"
    assert page.evaluate(f"{rows}.length") == 1  # pushed
    assert not page.is_visible("#history-changed")
    page.evaluate("window.__same_page = true")
    [job] = requests.post(f"{api}/claim", headers=auth, timeout=30,
                          json={"stage": 0, "worker": "node7-1"}).json()["jobs"]
    page.wait_for_function(f"{rows}.length === 2", timeout=10000)
    requests.post(f"{api}/advance", headers=auth, timeout=30,
                  json={"attempts": [{"attempt_id": job["attempt_id"]}]}).raise_for_status()
    page.wait_for_function(f"{rows}.length === 3", timeout=10000)
    texts = page.evaluate(f"Array.from({rows}).map(r => r.cells[1].textContent + '|' + "
                          "r.cells[2].textContent)")
    assert texts == ["pushed (stage 0)|", "claimed (stage 0)|node7-1", "done (stage 2)|"]
    assert page.evaluate("window.__same_page") is True
    assert page.is_visible("#history-changed")  # the header above is the page's first view
    page.screenshot(path="/tmp/job_history_live.png", full_page=True)
    page.evaluate("window.jobserverHistorySource.close()")
