"""Dashboard reads and pages, in-process."""
from __future__ import annotations

import pytest

from jobserver import create_app, insights, lifecycle, pools, queries
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


# ------------------------------------------------------------------ pools

def pool_board(client, lifetimes=(0, 5, 0), max_attempts=2):
    from tests.conftest import ADMIN

    r = client.post("/api/v1/boards", headers=ADMIN, json={
        "name": "hpc", "lifetimes": list(lifetimes), "max_attempts": max_attempts})
    assert r.status_code == 201, r.json
    auth = {"Authorization": f"Bearer {r.json['token']}"}
    assert client.post("/api/v1/boards/hpc/jobs", headers=auth,
                       json=[{"key": k} for k in ("a", "b", "c", "d/e")]).status_code == 200
    return auth


def run_in(client, auth, worker, allocation, n, samples=()):
    """A worker of an allocation claims n jobs and sends its heartbeats."""
    got = client.post("/api/v1/boards/hpc/claim", headers=auth, json={
        "stage": 0, "n": n, "worker": worker, "allocation": allocation,
        "host": f"node-{allocation}"}).json["jobs"]
    for cpu, rss in samples:
        r = client.post("/api/v1/boards/hpc/heartbeat", headers=auth, json={
            "worker": worker, "allocation": allocation, "running": [j["attempt_id"] for j in got],
            "samples": {str(j["attempt_id"]): {"host": f"node-{allocation}", "pid": 9,
                                               "cpu_percent": cpu, "rss_bytes": rss,
                                               "runtime_s": 2.0} for j in got}})
        assert r.status_code == 200
    return got


def test_resource_log_csv(client):
    import csv
    import io

    auth = pool_board(client)
    (a,) = run_in(client, auth, "w1", "4242", 1, samples=[(95.5, 1_000_000), (180.0, 2_500_000)])
    r = client.get(f"/boards/hpc/jobs/{a['key']}/resources.csv")
    assert r.status_code == 200
    assert r.mimetype == "text/csv" and r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert r.headers["Content-Disposition"] == 'attachment; filename="hpc-a-resources.csv"'
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["attempt_id", "stage", "at", "host", "allocation", "cpu_percent",
                       "rss_bytes", "runtime_s"]
    assert [row[:2] + row[3:] for row in rows[1:]] == [
        [str(a["attempt_id"]), "0", "node-4242", "4242", "95.5", "1000000", "2.0"],
        [str(a["attempt_id"]), "0", "node-4242", "4242", "180.0", "2500000", "2.0"]]
    assert rows[1][2].endswith("+00:00") and rows[1][2][10] == "T"  # ISO 8601, UTC
    # a job without samples: the header alone; a key with a slash; unknown jobs and boards
    r = client.get("/boards/hpc/jobs/d/e/resources.csv")
    assert r.status_code == 200 and r.text == ",".join(rows[0]) + "\n"
    assert 'filename="hpc-d_e-resources.csv"' in r.headers["Content-Disposition"]
    assert client.get("/boards/hpc/jobs/nope/resources.csv").status_code == 404
    assert client.get("/boards/nope/jobs/a/resources.csv").status_code == 404
    # the job page links it and sums the samples up
    page = client.get("/boards/hpc/jobs/a").text
    assert 'href="/boards/hpc/jobs/a/resources.csv"' in page
    assert 'id="peak-cpu">180.0%<' in page and 'data-b="2500000"' in page
    assert 'id="sample-count">2<' in page
    assert '<td class="allocation">4242</td><td>node-4242</td>' in page
    assert "no resource samples yet" in client.get("/boards/hpc/jobs/b").text


def test_resource_log_cells_are_no_formulas(client):
    auth = pool_board(client)
    got = client.post("/api/v1/boards/hpc/claim", headers=auth,
                      json={"stage": 0, "worker": "w"}).json["jobs"]
    client.post("/api/v1/boards/hpc/heartbeat", headers=auth, json={
        "worker": "w", "running": [got[0]["attempt_id"]],
        "samples": {str(got[0]["attempt_id"]): {"host": "=cmd|' /C calc'!A0"}}})
    line = client.get("/boards/hpc/jobs/a/resources.csv").text.splitlines()[1]
    assert "'=cmd" in line and ",=cmd" not in line


def test_resource_log_needs_the_viewer_password(tmp_path):
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'v.sqlite'}", "SWEEP_MODE": "off",
                      "VIEW_PASSWORD": "pw"})
    with app.app_context():
        b = lifecycle.create_board("hpc", [0, 5, 0])
        lifecycle.push(b.id, [NewJob("a", "{}", 0)])
    c = app.test_client()
    assert c.get("/boards/hpc/jobs/a/resources.csv").status_code == 401
    assert c.get("/boards/hpc/jobs/a/resources.csv",
                 headers={"Authorization": "Basic dTp3cm9uZw=="}).status_code == 401  # u:wrong
    ok = c.get("/boards/hpc/jobs/a/resources.csv", headers={"Authorization": "Basic dTpwdw=="})
    assert ok.status_code == 200 and ok.text.startswith("attempt_id,")


def test_pools_card(client):
    import time

    auth = pool_board(client, lifetimes=(0, 1, 0))
    page = client.get("/boards/hpc").text
    assert '<section class="card" id="pools" hidden>' in page  # no allocation yet
    assert insights.live_payload(lifecycle.board_by_name("hpc").id)["pools"] is None

    def report(alloc, **body):
        r = client.put(f"/api/v1/boards/hpc/allocations/{alloc}", headers=auth, json=body)
        assert r.status_code == 200, r.json

    report("101", pool="sims", scheduler="slurm", state="running", nodes=2,
           workers_per_node=4, time_limit_s=3600)
    report("102", pool="sims", scheduler="slurm", state="running", nodes=1,
           workers_per_node=2, time_limit_s=3600)
    report("103", pool="sims", scheduler="slurm", state="pending", reason="Priority", nodes=1,
           workers_per_node=2)
    run_in(client, auth, "w101", "101", 3)
    (done,) = run_in(client, auth, "w102", "102", 1)
    board = lifecycle.board_by_name("hpc")
    held = {a["id"]: (a["workers"], a["running"]) for a in pools.pools(board.id)["allocations"]}
    assert held == {"101": (1, 3), "102": (1, 1), "103": (0, 0)}
    # 102's job is done; 101 is killed at its time limit: its worker falls
    # silent and the sweep requeues its three jobs
    lifecycle.advance(board.id, [Advance(done["attempt_id"])])
    assert lifecycle.sweep(board.id, now=time.time() + 90, lost_after=3600).requeued == 3
    report("101", state="ended", reason="TIMEOUT")

    p = pools.pools(board.id)
    assert (p["pending"], p["running"], p["ended"], p["total"]) == (1, 1, 1, 3)
    by_id = {a["id"]: a for a in p["allocations"]}
    assert by_id["101"]["lost_text"] == "3 jobs lost → requeued"
    assert by_id["101"]["run_s"] is not None and by_id["103"]["run_s"] is None
    assert by_id["102"]["lost_text"] == "" and by_id["102"]["workers"] == 1

    page = client.get("/boards/hpc").text
    assert '<section class="card" id="pools" >' in page
    assert 'id="pools-pending">1<' in page and 'id="pools-running">1<' in page
    assert 'id="pools-ended">1<' in page
    row = page.split('data-allocation="101"')[1].split("</tr>")[0]
    assert "ended</span> <small class=\"reason\">TIMEOUT</small>" in row
    assert "<td>2 × 4</td>" in row and '<td class="lost-cell">3 jobs lost → requeued</td>' in row
    assert "of 1 h" in row
    assert 'class="alloc-ended lost-jobs"' in page and 'class="alloc-running"' in page
    assert page.split('data-allocation="102"')[1].split("</tr>")[0].count(
        '<td class="lost-cell">0</td>') == 1
    pending = page.split('data-allocation="103"')[1].split("</tr>")[0]
    assert '<small class="reason">Priority</small>' in pending
    assert "<th>host</th><th>allocation</th>" in page
    assert [w["allocation"] for w in insights.live_payload(board.id)["workers"]] == ["101", "102"]


def test_lost_jobs_out_of_attempts_say_failed(client):
    import time

    auth = pool_board(client, lifetimes=(0, 1, 0), max_attempts=1)
    client.put("/api/v1/boards/hpc/allocations/7", headers=auth,
               json={"pool": "p", "scheduler": "slurm", "state": "running"})
    run_in(client, auth, "w7", "7", 2)
    board = lifecycle.board_by_name("hpc")
    assert lifecycle.sweep(board.id, now=time.time() + 90).failed == 2
    (a,) = pools.pools(board.id)["allocations"]
    assert (a["lost_jobs"], a["lost_failed"]) == (2, 2)
    assert a["lost_text"] == "2 jobs lost → failed (no attempts left)"
    assert pools._lost_text(3, 1) == "3 jobs lost → 2 requeued, 1 failed (no attempts left)"
