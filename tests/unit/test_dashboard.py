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


# ------------------------------------------------------------- workflows

def workflow(max_attempts: int = 1):
    """a -> {b, c} -> d, and x -> y -> z."""
    from jobserver.lifecycle.deps import Extras

    b = lifecycle.create_board("wf", [0, 5, 0], max_attempts=max_attempts)
    after = {"b": ("a",), "c": ("a",), "d": ("b", "c"), "y": ("x",), "z": ("y",)}
    lifecycle.push_jobs(b.id, [NewJob(k, "{}", 0) for k in "abcdxyz"],
                        {k: Extras(after=a, priority=5 if k == "c" else 0)
                         for k, a in after.items()})
    return b


def test_blocked_jobs_are_counted_and_a_stuck_board_says_why(app):
    b = workflow()
    o = insights.overview(b.id)
    assert (o["waiting"], o["blocked"], o["total"]) == (2, 5, 7)
    assert o["stages"][0]["blocked"] == 5 and o["stages"][0]["count"] == 2
    assert insights.progress(b.id)["blocked"] == 5
    a, x = lifecycle.claim(b.id, 0, 10, worker="w", lease=True)
    lifecycle.advance(b.id, [Advance(a.attempt_id)])
    lifecycle.fail(b.id, x.attempt_id, "boom")
    o = insights.overview(b.id)
    assert (o["waiting"], o["blocked"], o["failed"], o["stuck"]) == (2, 3, 1, False)
    assert o["health"] == "attention"
    assert o["health_reason"] == ("1 failed job(s) hold(s) up blocked jobs downstream; "
                                  "retry them with `jobworker retry --failed`")
    assert o["eta_at_most"] and o["eta_seconds"] is not None  # y, z are counted in it
    for _ in range(2):  # c, b, then d
        got = lifecycle.claim(b.id, 0, 10, worker="w", lease=True)
        lifecycle.advance(b.id, [Advance(j.attempt_id) for j in got])
    o = insights.overview(b.id)
    assert (o["done"], o["blocked"], o["stuck"], o["eta_seconds"]) == (4, 2, True, None)
    assert o["health"] == "failed"
    assert o["health_reason"] == ("stuck: 2 job(s) blocked behind 1 failed job(s); "
                                  "retry them with `jobworker retry --failed`")
    lifecycle.retry(b.id, state="failed")
    o = insights.overview(b.id)
    assert (o["waiting"], o["blocked"], o["stuck"]) == (1, 2, False)
    assert o["health"] != "failed" and not o["eta_at_most"]


def test_blocked_behind_a_cancelled_job(app):
    b = workflow()
    lifecycle.cancel(b.id, ["x"])
    got = lifecycle.claim(b.id, 0, 10, worker="w", lease=True)
    o = insights.overview(b.id)
    assert not o["stuck"] and "1 cancelled job(s) hold(s) up" in o["health_reason"]
    lifecycle.advance(b.id, [Advance(j.attempt_id) for j in got])
    for _ in range(2):
        got = lifecycle.claim(b.id, 0, 10, worker="w", lease=True)
        lifecycle.advance(b.id, [Advance(j.attempt_id) for j in got])
    o = insights.overview(b.id)
    assert o["stuck"] and o["health"] == "stalled"
    assert o["health_reason"] == ("stuck: 2 job(s) blocked behind 1 cancelled job(s); "
                                  "retry them with `jobworker retry --cancelled`")


def test_pages_show_blocked_jobs_dependencies_and_notes(app, client):
    b = workflow()
    a, x = lifecycle.claim(b.id, 0, 10, worker="w", lease=True)
    lifecycle.heartbeat(b.id, "w", [a.attempt_id], notes={a.attempt_id: [
        {"kind": "event", "name": "mesh", "message": "<i>12,000 cells</i>"},
        {"kind": "log", "message": "reading input"},
        {"kind": "var", "name": "energy", "value": "-1.25"}]})
    lifecycle.advance(b.id, [Advance(a.attempt_id)])
    rows = client.get("/boards/wf/jobs.json?state=blocked").json["rows"]
    assert sorted(r["key"] for r in rows) == ["d", "y", "z"]
    page = client.get("/boards/wf").text
    assert 'id="blocked">3<' in page
    d = client.get("/boards/wf/jobs/d").text
    assert "blocked by: " in d and "until b, c are done" in d
    assert 'href="/boards/wf/jobs/b"' in d and 'href="/boards/wf/jobs/c"' in d
    job_a = insights.job_history(b.id, "a")
    assert [n["kind"] for n in job_a["notes"]] == ["event", "log", "var"]
    assert job_a["notes"][2] | {"at": 0} == {"at": 0, "kind": "var", "stage": 0,
                                             "name": "energy", "text": "-1.25"}
    assert not any(t["what"].startswith(("event", "log", "var")) for t in job_a["timeline"])
    html = client.get("/boards/wf/jobs/a").text
    assert "&lt;i&gt;12,000 cells&lt;/i&gt;" in html and 'id="notes"' in html
    assert "runs before (2)" in html
    c = client.get("/boards/wf/jobs/c").text
    assert 'id="priority">5<' in c


def test_settings_page_shows_the_cap(app, client):
    b = lifecycle.create_board("cap", [0, 5, 0], max_attempts=2, max_running=4)
    html = client.get("/boards/cap/lifetimes").text
    assert 'name="max_running" type="number" min="0" step="1" placeholder="no limit" value="4"' in html
    assert 'name="max_attempts" type="number" min="1" max="1000" step="1" required value="2"' in html
    lifecycle.set_board_options(b.id, max_running=None)
    assert 'placeholder="no limit" value=""' in client.get("/boards/cap/lifetimes").text
    assert insights.live_payload(b.id)["max_running"] is None
