"""Pools in a real browser (issue 10): a pool reports its Slurm allocations
through the real API (PUT, as `jobworker pool` does); fake workers in two
of them claim jobs and send heartbeats with resource samples.  One
allocation is cancelled: its worker falls silent, the sweep requeues its
jobs, and the board page says so in its Pools card; a requeued job runs
again in the other allocation, and its page shows both attempts with their
allocation and node, its resource log's peaks and the CSV download.
Screenshots go to the artifacts folder."""
from __future__ import annotations

import csv
import io
import threading

import pytest
import requests

from tests.conftest import ADMIN, artifacts_dir, start_live_server

pytestmark = pytest.mark.browser

LEASE_MIN = 0.05  # stage 1's lifetime: a silent worker's jobs go back after 3 s


@pytest.fixture
def server(tmp_path):
    s = start_live_server(tmp_path, JOBSERVER_WORKER_LOST_AFTER="60")
    yield s
    s.stop()


class Api:
    """The board's API as a pool and its workers use it (plain HTTP)."""

    def __init__(self, url: str, board: str, token: str) -> None:
        self.base = f"{url}/api/v1/boards/{board}"
        self.s = requests.Session()
        self.s.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: object = None) -> dict:
        r = self.s.request(method, self.base + path, json=body, timeout=10)
        assert r.ok, (r.status_code, r.text)
        return r.json()

    def report(self, allocation: str, **body: object) -> dict:
        return self.call("PUT", f"/allocations/{allocation}", body)

    def claim(self, worker: str, allocation: str, host: str, n: int) -> list[dict]:
        return self.call("POST", "/claim", {"stage": 0, "n": n, "worker": worker,
                                            "allocation": allocation, "host": host})["jobs"]

    def beat(self, worker: str, allocation: str, host: str, jobs: list[dict],
             cpu: float, rss: int, runtime: float) -> dict:
        return self.call("POST", "/heartbeat", {
            "worker": worker, "allocation": allocation, "host": host, "pid": 4711,
            "running": [j["attempt_id"] for j in jobs],
            "resources": {"cpu_percent": cpu, "worker_rss_bytes": 40_000_000},
            "samples": {str(j["attempt_id"]): {"host": host, "pid": 4711, "cpu_percent": cpu,
                                               "rss_bytes": rss, "runtime_s": runtime}
                        for j in jobs}})


def live(page) -> None:
    page.wait_for_function("document.getElementById('conn').dataset.state === 'live'")


def test_pools_on_the_board_and_job_pages(server, page):
    r = requests.post(f"{server.url}/api/v1/boards", headers=ADMIN, json={
        "name": "hpc", "lifetimes": [0, LEASE_MIN, 0], "max_attempts": 3,
        "stage_names": ["queued", "simulating", "done"]})
    r.raise_for_status()
    api = Api(server.url, "hpc", r.json()["token"])
    api.call("POST", "/jobs", [{"key": f"sim-{i:02d}", "payload": {"i": i}} for i in range(5)])

    page.goto(f"{server.url}/boards/hpc")
    live(page)
    assert page.locator("#pools").is_hidden()  # no pool yet

    # the pool asks Slurm for allocations; one ran out of work earlier
    shape = {"pool": "sims", "scheduler": "slurm", "time_limit_s": 600}
    api.report("5000", state="running", nodes=1, workers_per_node=2, **shape)
    api.report("5000", state="ended", reason="idle")
    api.report("5001", state="running", nodes=2, workers_per_node=2, **shape)
    api.report("5002", state="running", nodes=1, workers_per_node=2, **shape)
    api.report("5003", state="pending", reason="Priority", nodes=1, workers_per_node=2, **shape)
    page.wait_for_selector("#pools", state="visible")  # a live update shows the card

    doomed = api.claim("node01-w0", "5001", "node01", 3)
    kept = api.claim("node03-w0", "5002", "node03", 2)
    assert len(doomed) == 3 and len(kept) == 2
    for cpu, rss, t in ((97.5, 180_000_000, 1.0), (188.0, 420_000_000, 2.0)):
        api.beat("node01-w0", "5001", "node01", doomed, cpu, rss, t)
    api.beat("node03-w0", "5002", "node03", kept, 99.0, 64_000_000, 1.0)

    # allocation 5002's worker stays alive (and keeps its jobs) throughout
    stop = threading.Event()

    def keep_alive():
        while not stop.wait(0.5):
            api.beat("node03-w0", "5002", "node03", kept, 99.0, 64_000_000, 1.0)

    beater = threading.Thread(target=keep_alive, daemon=True)
    beater.start()
    try:
        page.wait_for_function(
            "document.querySelector('#allocations tr[data-allocation=\"5001\"] td:nth-child(6)')"
            "?.textContent === '3'")
        row = page.locator("#allocations tr[data-allocation='5001'] td")
        assert row.nth(3).inner_text() == "2 × 2" and row.nth(4).inner_text() == "1"

        # scancel 5001: its worker falls silent; the pool says the allocation
        # ended; the sweep sends its three jobs back to the queue
        api.report("5001", state="ended", reason="CANCELLED")
        lost = "#allocations tr[data-allocation='5001'] td.lost-cell"
        page.wait_for_function(
            f"document.querySelector(\"{lost}\")?.textContent === '3 jobs lost → requeued'",
            timeout=15000)
        page.wait_for_function("document.getElementById('waiting').textContent === '3'")

        # one requeued job runs again in 5002 and is done there
        (again,) = api.claim("node03-w0", "5002", "node03", 1)
        assert again["key"] in {j["key"] for j in doomed} and again["attempt"] == 2
        api.beat("node03-w0", "5002", "node03", [again], 143.0, 250_000_000, 1.5)
        api.call("POST", "/advance", {"attempts": [{"attempt_id": again["attempt_id"]}]})
        page.wait_for_function("document.getElementById('done').textContent === '1'")

        assert page.inner_text("#pools-pending") == "1"
        assert page.inner_text("#pools-running") == "1"
        assert page.inner_text("#pools-ended") == "2"
        cells = page.locator("#allocations tr[data-allocation='5001'] td").all_inner_texts()
        assert cells[0:2] == ["5001", "sims slurm"]
        assert cells[2].split() == ["ENDED", "CANCELLED"] or cells[2].split() == ["ended",
                                                                                   "CANCELLED"]
        assert cells[4:7] == ["0", "0", "3 jobs lost → requeued"]
        assert page.locator("#allocations tr[data-allocation='5001']").get_attribute(
            "class") == "alloc-ended lost-jobs"
        alive = page.locator("#allocations tr[data-allocation='5002'] td").all_inner_texts()
        assert alive[4:7] == ["1", "2", "0"]
        assert "Priority" in page.inner_text("#allocations tr[data-allocation='5003']")
        assert "idle" in page.inner_text("#allocations tr[data-allocation='5000']")
        assert [t.split("\t")[:3] for t in
                page.locator("#workers tbody tr").all_inner_texts()] == [
            ["node01-w0", "node01", "5001"], ["node03-w0", "node03", "5002"]]
        assert page.locator("#workers tr[data-worker='node01-w0']").get_attribute(
            "class") == "lost"
        page.screenshot(path=str(artifacts_dir() / "pools-board.png"), full_page=True)

        # the job page: the lost attempt in 5001 on node01, the second in 5002 on node03
        page.goto(f"{server.url}/boards/hpc/jobs/{again['key']}")
        rows = [t.split("\t") for t in page.locator("#attempts tbody tr").all_inner_texts()]
        assert [(r[3], r[4], r[7]) for r in rows] == [("5001", "node01", "lost"),
                                                      ("5002", "node03", "advanced")]
        assert page.inner_text("#peak-cpu") == "188.0%"
        assert page.inner_text("#peak-rss") == "400.5 MB"
        assert page.inner_text("#sample-count") == "3"
        page.screenshot(path=str(artifacts_dir() / "pools-job.png"), full_page=True)
        with page.expect_download() as got:
            page.click("#resource-log")
        text = got.value.path().read_text(encoding="utf-8")
    finally:
        stop.set()
        beater.join(5)
    assert got.value.suggested_filename == f"hpc-{again['key']}-resources.csv"
    log = list(csv.DictReader(io.StringIO(text)))
    assert [(s["allocation"], s["host"], s["cpu_percent"], s["rss_bytes"]) for s in log] == [
        ("5001", "node01", "97.5", "180000000"), ("5001", "node01", "188.0", "420000000"),
        ("5002", "node03", "143.0", "250000000")]
    assert all(s["at"].endswith("+00:00") for s in log)
