"""Dashboard reads and pages, in-process."""
from __future__ import annotations

import pytest

from jobserver import create_app, insights, lifecycle, queries
from jobserver.lifecycle import Advance, NewJob


@pytest.fixture
def board(app):
    b = lifecycle.create_board("camp", [0, 5, 0], ["queued", "running", "done"], max_attempts=1)
    lifecycle.push(b.id, [NewJob(f"j{i:02d}", '{"p": "<b>x</b>"}', 0) for i in range(40)])
    return b


def test_overview_progress_rate_eta_and_health(board):
    o = insights.overview(board.id)
    assert (o["total"], o["done"], o["waiting"], o["health"]) == (40, 0, 40, "stalled")
    got = lifecycle.claim(board.id, 0, 10, worker="w1", lease=True)
    assert insights.overview(board.id)["health"] == "healthy"
    lifecycle.advance(board.id, [Advance(j.attempt_id) for j in got[:8]])
    lifecycle.fail(board.id, got[8].attempt_id, "boom")
    o = insights.overview(board.id)
    assert (o["done"], o["running"], o["failed"], o["progress"]) == (8, 1, 1, 20.0)
    assert o["per_minute"] > 0 and o["eta_seconds"] > 0
    assert o["health"] == "attention" and "failed" in o["health_reason"]
    assert [s["name"] for s in o["stages"]] == ["queued", "running", "done"]
    tp = insights.throughput(board.id)
    assert sum(tp["stages"]["2"]) == 8 and len(tp["minutes"]) == 60
    assert insights.failed_jobs(board.id)[0]["error"] == "boom"


def test_done_board_is_done(board):
    for _ in range(4):
        got = lifecycle.claim(board.id, 0, 10, worker="w", lease=True)
        lifecycle.advance(board.id, [Advance(j.attempt_id) for j in got])
    o = insights.overview(board.id)
    assert o["health"] == "done" and o["progress"] == 100.0 and o["eta_seconds"] is None


def test_job_table_filters_sorts_and_pages(board, app):
    lifecycle.claim(board.id, 0, 5, worker="w", lease=True)
    t = queries.job_table(board.id, None, None, None, "id", 1, 15)
    assert [r["key"] for r in t["rows"]][:2] == ["j00", "j01"] and t["has_next"]
    t = queries.job_table(board.id, 1, None, None, "id", 1, 50)
    assert len(t["rows"]) == 5 and not t["has_next"]
    t = queries.job_table(board.id, None, None, "j3", "-id", 1, 50)
    assert [r["key"] for r in t["rows"]] == [f"j3{i}" for i in range(9, -1, -1)]
    t = queries.job_table(board.id, None, None, None, "-stage", 1, 3)
    assert [r["stage"] for r in t["rows"]] == [1, 1, 1]


def test_pages_render_and_escape(board, client):
    page = client.get("/boards/camp")
    assert page.status_code == 200 and "camp" in page.text
    assert client.get("/boards/camp/jobs.json?stage=0&sort=-id").json["rows"][0]["key"] == "j39"
    assert client.get("/boards/camp/jobs.json?sort=nope").status_code == 400
    assert client.get("/boards/camp/jobs.json?state=nope").status_code == 400
    job = client.get("/boards/camp/jobs/j01")
    assert job.status_code == 200 and "&lt;b&gt;x&lt;/b&gt;" in job.text and "<b>x</b>" not in job.text
    assert client.get("/boards/camp/jobs/nope").status_code == 404
    assert client.get("/boards/nope").status_code == 404
    assert "lifetime" in client.get("/boards/camp/lifetimes").text


def test_stage_edits_need_the_token(board, client):
    token = lifecycle.issue_token(board.id)
    r = client.put("/api/v1/boards/camp/stages/1", json={"lifetime": 2.5, "name": "simulating"})
    assert r.status_code == 401
    r = client.put("/api/v1/boards/camp/stages/1", json={"lifetime": 2.5, "name": "simulating"},
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert r.json["stages"][1] == {"stage": 1, "lifetime": 2.5, "name": "simulating"}
    r = client.put("/api/v1/boards/camp/stages/1", json={"lifetime": -1},
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400


def test_viewer_password(tmp_path):
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'v.sqlite'}", "SWEEP_MODE": "off",
                      "VIEW_PASSWORD": "pw"})
    c = app.test_client()
    assert c.get("/", headers={"Accept": "text/html"}).status_code == 401
    assert c.get("/boards/x").status_code == 401
    ok = c.get("/", headers={"Accept": "text/html", "Authorization": "Basic dTpwdw=="})  # u:pw
    assert ok.status_code == 200
    assert c.get("/").text.startswith("Hello")  # the protocol's greeting stays open
