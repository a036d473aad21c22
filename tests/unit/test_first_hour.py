"""What a new user met in the first hour (issue 7), server side: attempts
counted per stage, states and figures that tell the truth, job output kept
per stage, boards listed and deleted, boards that cannot work refused."""
from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from jobserver import create_app, insights, lifecycle, queries
from jobserver.cli import main
from jobserver.dialect import close_writer
from jobserver.extensions import db
from jobserver.lifecycle import Advance, NewJob
from tests.conftest import ADMIN, sqlite_at_revision


def api_board(client, name="pipe", **spec):
    r = client.post("/api/v1/boards", headers=ADMIN, json={"name": name, **spec})
    assert r.status_code == 201, r.json
    return {"Authorization": f"Bearer {r.json['token']}"}


def claim_one(client, auth, stage, name="pipe", worker="w1"):
    r = client.post(f"/api/v1/boards/{name}/claim", json={"stage": stage, "worker": worker},
                    headers=auth)
    assert r.status_code == 200, r.json
    return r.json["jobs"][0]


# ------------------------------------------------- 1. attempts count per stage

def test_successes_at_earlier_stages_do_not_spend_the_next_stages_attempts(client):
    auth = api_board(client, lifetimes=[0] * 9, max_attempts=3)
    client.post("/api/v1/boards/pipe/jobs", json=[{"key": "a"}], headers=auth)
    for stage in (0, 2, 4):
        job = claim_one(client, auth, stage)
        assert job["attempt"] == 1  # a fresh budget at every stage
        r = client.post("/api/v1/boards/pipe/advance",
                        json={"attempts": [{"attempt_id": job["attempt_id"]}]}, headers=auth)
        assert r.json == {"advanced": 1, "cancelled": 0}
    outcomes = []
    for _ in range(3):
        job = claim_one(client, auth, 6)
        outcomes.append(client.post("/api/v1/boards/pipe/fail", headers=auth, json={
            "attempt_id": job["attempt_id"], "error": "boom"}).json["outcome"])
    assert outcomes == ["requeued", "requeued", "failed"]
    detail = client.get("/api/v1/boards/pipe/jobs/a", headers=auth).json
    assert (detail["state"], detail["stage"], detail["attempts"]) == ("failed", 6, 3)
    assert [(p["stage"], p["claims"], p["done"], p["failures"]) for p in
            detail["attempts_per_stage"]] == [(0, 1, 1, 0), (2, 1, 1, 0), (4, 1, 1, 0),
                                              (6, 3, 0, 3)]


def test_classic_losses_count_per_stage(client):
    h = {"jobix": "31"}
    assert client.get("/init/0/1/0/1/0", headers=h).status_code == 200
    client.post("/set", data=json.dumps({"1": {"jobstage": 0, "jobcmd": "x"}}), headers=h)
    assert client.get("/get/0", headers=h).json["jobid"] == 1
    assert client.get("/update_job/1/2", headers=h).status_code == 200
    b = lifecycle.find_board(31)
    for loss in range(2):  # two workers die at stage 2: the job goes back each time
        assert client.get("/get/2", headers=h).json["jobid"] == 1
        swept = lifecycle.sweep(board_id=b.id, now=time.time() + 61)
        assert (swept.requeued, swept.failed) == (1, 0), loss
    assert client.get("/get/2", headers=h).json["jobid"] == 1
    assert lifecycle.sweep(board_id=b.id, now=time.time() + 61).failed == 1  # the third


def test_migration_recounts_attempts_of_an_existing_database(tmp_path):
    path = tmp_path / "old.sqlite"
    old = sqlite_at_revision(path, "0003")
    old.executescript("""
        INSERT INTO boards (id, name, created_at, auto_requeue, max_attempts)
            VALUES (1, 'b', 0, 1, 3);
        -- done at 0 and 2, then one failure at 4: the old counter says 3
        INSERT INTO jobs (id, board_id, key, payload, stage, entered_at, flagged, attempts, state)
            VALUES (1, 1, 'a', 'null', 4, 0, 0, 3, 'active');
        -- failed for good while at running stage 1, the old way
        INSERT INTO jobs (id, board_id, key, payload, stage, entered_at, flagged, attempts, state)
            VALUES (2, 1, 'b', 'null', 1, 0, 0, 3, 'failed');
        INSERT INTO attempts (job_id, board_id, stage, started_at, ended_at, outcome) VALUES
            (1, 1, 0, 0, 1, 'advanced'), (1, 1, 2, 1, 2, 'advanced'), (1, 1, 4, 2, 3, 'failed'),
            (2, 1, 0, 0, 1, 'failed'), (2, 1, 0, 1, 2, 'lost'), (2, 1, 0, 2, 3, 'failed');
        INSERT INTO stage_counts VALUES (1, 4, 'active', 1), (1, 1, 'failed', 1);
    """)
    old.commit()
    old.close()
    app = create_app({"DATABASE_URL": f"sqlite:///{path}", "SWEEP_MODE": "off"})  # migrates
    with app.app_context():
        assert queries.job_detail(1, "a")["attempts"] == 1
        b = queries.job_detail(1, "b")
        assert (b["stage"], b["state"], b["attempts"]) == (0, "failed", 3)
        assert queries.board_status(1)["by_stage"] == {4: {"active": 1}, 0: {"failed": 1}}
        close_writer(db.engine)
        db.engine.dispose()


# ------------------------------------------------------ 2. honest states, figures

def test_a_board_whose_jobs_all_failed_is_failed_not_done(app):
    b = lifecycle.create_board("bad", [0, 5, 0], max_attempts=1)
    lifecycle.push(b.id, [NewJob(f"j{i}", "null", 0) for i in range(20)])
    for j in lifecycle.claim(b.id, 0, 20, worker="w", lease=True):
        assert lifecycle.fail(b.id, j.attempt_id, "Traceback\nValueError: bad input") == "failed"
    o = insights.overview(b.id)
    assert o["health"] == "failed" and "20 job(s) failed" in o["health_reason"]
    assert o["eta_seconds"] is None and o["progress"] == 0.0
    assert [(s["stage"], s["count"], s["failed"]) for s in o["stages"]] == [
        (0, 0, 20), (1, 0, 0), (2, 0, 0)]
    groups = insights.failure_groups(b.id)
    assert groups["total"] == 20 and groups["groups"][0]["error"] == "ValueError: bad input"
    assert groups["groups"][0]["count"] == 20 and len(groups["groups"][0]["keys"]) == 5


def test_states_read_waiting_running_done(app):
    b = lifecycle.create_board("s", [0, 5, 0])
    lifecycle.push(b.id, [NewJob(f"j{i}", "null", 0) for i in range(3)])
    got = lifecycle.claim(b.id, 0, 2, worker="w", lease=True)
    lifecycle.advance(b.id, [Advance(got[0].attempt_id)])
    assert {r["key"]: r["state"] for r in queries.job_table(b.id)["rows"]} == {
        "j0": "done", "j1": "running", "j2": "waiting"}
    for state, keys in (("done", ["j0"]), ("running", ["j1"]), ("waiting", ["j2"])):
        assert [r["key"] for r in queries.job_table(b.id, state=state)["rows"]] == keys
        assert [j["key"] for j in queries.list_jobs(b.id, None, state, 0, 10)[0]] == keys
    assert queries.job_detail(b.id, "j0")["state"] == "done"


def test_rate_in_the_first_seconds_of_a_run_and_on_an_idle_board(app):
    b = lifecycle.create_board("r", [0, 5, 0])
    lifecycle.push(b.id, [NewJob(f"j{i}", "null", 0) for i in range(500)])
    got = lifecycle.claim(b.id, 0, 45, worker="w", lease=True)
    lifecycle.advance(b.id, [Advance(j.attempt_id) for j in got])
    lifecycle.claim(b.id, 0, 4, worker="w", lease=True)  # still running
    now = time.time() + 8  # 8 s into the run: 45 done, about 340 a minute
    o = insights.overview(b.id, now)
    assert 250 < o["per_minute"] < 400, o["per_minute"]
    assert 60 < o["eta_seconds"] < 120  # 451 left at ~340/min: about 80 s
    # nobody working and nothing finished for two minutes: idle, rate 0
    r = lifecycle.create_board("idle", [0, 5, 0])
    lifecycle.push(r.id, [NewJob(f"k{i}", "null", 0) for i in range(20)])
    got = lifecycle.claim(r.id, 0, 10, worker="w", lease=True)
    lifecycle.advance(r.id, [Advance(j.attempt_id) for j in got])
    assert insights.overview(r.id, time.time() + 5)["per_minute"] > 0
    assert insights.overview(r.id, time.time() + 120)["per_minute"] == 0


def test_failed_job_page_tells_one_story(app, client):
    b = lifecycle.create_board("f", [0, 5, 0], max_attempts=1)
    lifecycle.push(b.id, [NewJob("x", "null", 0)])
    job = lifecycle.claim(b.id, 0, 1, worker="w", lease=True)[0]
    lifecycle.fail(b.id, job.attempt_id, "exit code 2")
    page = client.get("/boards/f/jobs/x").text
    assert "failed at stage 0 after 1 of 1 attempts" in page
    assert "failed (stage 0)" in page and "stage 1" not in page.split("<h2>")[0]


def test_one_word_for_overstaying_jobs(client):
    h = {"jobix": "5", "Accept": "text/html"}
    client.get("/init/0/30/0", headers=h)
    page = client.get("/get?jobix=5", headers=h).text
    assert "Overstaying jobs" in page and "xpired" not in page


# ------------------------------------------------------------------ 5. output

def test_log_tail_reaches_the_server_while_the_job_runs_and_is_kept_per_stage(client):
    auth = api_board(client, lifetimes=[0, 5, 0, 5, 0])
    client.post("/api/v1/boards/pipe/jobs", json=[{"key": "a"}], headers=auth)
    job = claim_one(client, auth, 0)
    r = client.post("/api/v1/boards/pipe/heartbeat", headers=auth, json={
        "worker": "w1", "running": [job["attempt_id"]],
        "logs": {str(job["attempt_id"]): "step 1 of 3\n"}})
    assert r.status_code == 200
    detail = client.get("/api/v1/boards/pipe/jobs/a", headers=auth).json
    assert detail["state"] == "running" and detail["log_tail"] == "step 1 of 3\n"
    # another worker cannot write into this attempt's log
    client.post("/api/v1/boards/pipe/heartbeat", headers=auth, json={
        "worker": "intruder", "logs": {str(job["attempt_id"]): "forged"}})
    assert client.get("/api/v1/boards/pipe/jobs/a", headers=auth).json["log_tail"] == "step 1 of 3\n"
    client.post("/api/v1/boards/pipe/advance", headers=auth, json={"attempts": [
        {"attempt_id": job["attempt_id"], "log": "stage 0 output", "result": {"e": 1.5}}]})
    job = claim_one(client, auth, 2)
    client.post("/api/v1/boards/pipe/advance", headers=auth, json={"attempts": [
        {"attempt_id": job["attempt_id"], "log": "stage 2 output", "result": {"e": 2.5}}]})
    detail = client.get("/api/v1/boards/pipe/jobs/a", headers=auth).json
    assert detail["log_tails"] == {"0": "stage 0 output", "2": "stage 2 output"}
    listed = client.get("/api/v1/boards/pipe/jobs?include=result", headers=auth).json["jobs"]
    assert listed[0]["result"] == {"e": 2.5} and listed[0]["state"] == "done"
    assert client.get("/api/v1/boards/pipe/jobs?include=nope", headers=auth).status_code == 400
    page = client.get("/boards/pipe/jobs/a").text
    assert "stage 0 output" in page and "stage 2 output" in page


# ------------------------------------------------------ 6. boards: list, delete

def test_boards_are_listed_and_deleted_over_the_api(client):
    auth = api_board(client, name="one")
    other = api_board(client, name="two")
    client.post("/api/v1/boards/one/jobs", json=[{"key": "a"}, {"key": "b"}], headers=auth)
    listed = client.get("/api/v1/boards", headers=ADMIN).json["boards"]
    assert [(b["name"], b["jobs"]) for b in listed] == [("one", 2), ("two", 0)]
    assert client.delete("/api/v1/boards/one").status_code == 401
    assert client.delete("/api/v1/boards/one", headers=other).status_code == 403
    r = client.delete("/api/v1/boards/one", headers=auth)
    assert r.status_code == 200 and r.json == {"board": "one", "deleted_jobs": 2}
    assert [b["name"] for b in client.get("/api/v1/boards", headers=ADMIN).json["boards"]] == ["two"]
    assert client.get("/api/v1/boards/one", headers=auth).status_code == 401  # token gone
    assert client.post("/api/v1/boards", headers=ADMIN, json={"name": "one"}).status_code == 201  # name free


def test_admin_token_guards_the_board_list(tmp_path):
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'a.sqlite'}", "SWEEP_MODE": "off",
                      "ADMIN_TOKEN": "adm"})
    c = app.test_client()
    admin = {"Authorization": "Bearer adm"}
    token = c.post("/api/v1/boards", json={"name": "x"}, headers=admin).json["token"]
    c.post("/api/v1/boards", json={"name": "y"}, headers=admin)
    assert c.get("/api/v1/boards").status_code == 401
    assert [b["name"] for b in c.get("/api/v1/boards", headers=admin).json["boards"]] == ["x", "y"]
    own = c.get("/api/v1/boards", headers={"Authorization": f"Bearer {token}"}).json["boards"]
    assert [b["name"] for b in own] == ["x"]
    assert c.delete("/api/v1/boards/y", headers=admin).json["board"] == "y"
    with app.app_context():
        close_writer(db.engine)


def test_board_list_and_delete_commands(monkeypatch, tmp_path):
    monkeypatch.setenv("JOBSERVER_DATABASE_URL", f"sqlite:///{tmp_path / 'c.sqlite'}")
    run = CliRunner().invoke
    assert run(main, ["board", "list"]).output.startswith("no boards yet")
    assert run(main, ["board", "create", "demo"]).exit_code == 0
    listed = run(main, ["board", "list"])
    assert "demo" in listed.output and "0 jobs" in listed.output
    no = run(main, ["board", "delete", "demo"], input="n\n")
    assert no.exit_code != 0 and "demo" in run(main, ["board", "list"]).output
    yes = run(main, ["board", "delete", "demo"], input="y\n")
    assert yes.exit_code == 0 and "deleted" in yes.output
    assert run(main, ["board", "delete", "demo", "--yes"]).exit_code == 1  # gone: one line
    assert run(main, ["board", "create", "demo"]).exit_code == 0
    assert run(main, ["board", "delete", "demo", "--yes"]).exit_code == 0


# ----------------------------------------------- 7. boards that cannot work

def test_boards_must_end_on_a_resting_stage(client, monkeypatch, tmp_path):
    r = client.post("/api/v1/boards", headers=ADMIN, json={"name": "odd", "lifetimes": [0, 2]})
    assert r.status_code == 400 and "odd number" in r.json["message"]
    assert client.get("/api/v1/boards", headers=ADMIN).json["boards"] == []  # nothing written
    auth = api_board(client, name="plain")
    stages = client.get("/api/v1/boards/plain", headers=auth).json["stages"]
    assert [(s["stage"], s["lifetime"]) for s in stages] == [(0, 0), (1, 30), (2, 0)]
    assert client.get("/init/0/30", headers={"jobix": "9"}).status_code == 400
    monkeypatch.setenv("JOBSERVER_DATABASE_URL", f"sqlite:///{tmp_path / 'c.sqlite'}")
    out = CliRunner().invoke(main, ["board", "create", "x", "--lifetimes", "0/2"])
    assert out.exit_code == 1 and "odd number" in out.output and "Traceback" not in out.output


# --------------------------------------------------------------- 8. smaller

def test_config_shows_what_serve_runs_with(monkeypatch, tmp_path):
    monkeypatch.setenv("JOBSERVER_DATABASE_URL", f"sqlite:///{tmp_path / 'c.sqlite'}")
    monkeypatch.delenv("JOBSERVER_ASYNC_MODE", raising=False)
    shown = json.loads(CliRunner().invoke(main, ["config"]).output)
    assert (shown["SWEEP_MODE"], shown["ASYNC_MODE"]) == ("thread", "eventlet")
    wsgi = json.loads(CliRunner().invoke(main, ["config", "--wsgi"]).output)
    assert (wsgi["SWEEP_MODE"], wsgi["ASYNC_MODE"], wsgi["WEBSOCKET"]) == (
        "request", "threading", False)


@pytest.mark.parametrize("missing", ["GET /boards", "DELETE /boards/{name}",
                                     "GET /boards/{name}/failures"])
def test_openapi_describes_the_new_routes(client, missing):
    method, path = missing.split(" ")
    assert method.lower() in client.get("/api/v1/openapi.json").json["paths"][path]


def test_a_lost_job_goes_back_to_the_stage_it_was_claimed_from(client):
    h = {"jobix": "32"}
    client.get("/init/0/1/0/1/0", headers=h)
    client.post("/set", data=json.dumps({"1": {"jobstage": 0, "jobcmd": "x"}}), headers=h)
    assert client.get("/get/0/3", headers=h).json["jobid"] == 1  # 0 -> 3, skipping 1 and 2
    b = lifecycle.find_board(32)
    assert lifecycle.sweep(board_id=b.id, now=time.time() + 61).requeued == 1
    assert queries.job_detail(b.id, "1")["stage"] == 0  # not 2: stage 0's work is undone
    assert queries.board_status(b.id)["by_stage"] == {0: {"active": 1}}


def test_no_stage_can_be_added_past_a_boards_last_one(client):
    auth = api_board(client, name="fixed")
    r = client.put("/api/v1/boards/fixed/stages/3", json={"lifetime": 5}, headers=auth)
    assert r.status_code == 404 and "0..2" in r.json["message"]
    assert client.put("/api/v1/boards/fixed/stages/1", json={"lifetime": 5},
                      headers=auth).status_code == 200
    h = {"jobix": "33"}
    client.get("/init/0/30/0", headers=h)
    assert client.get("/lifetime/3/1", headers=h).status_code == 404
    assert client.get("/lifetime", headers=h).json == {"0": 0, "1": 30, "2": 0}


def test_a_big_board_is_deleted_in_chunks_with_its_counts(app, monkeypatch):
    from jobserver.lifecycle import boards as boards_module

    monkeypatch.setattr(boards_module, "DELETE_CHUNK", 7)
    b = lifecycle.create_board("big", [0, 5, 0])
    keep = lifecycle.create_board("keep", [0, 5, 0])
    lifecycle.push(b.id, [NewJob(f"j{i}", "null", 0) for i in range(30)])
    lifecycle.push(keep.id, [NewJob("k", "null", 0)])
    for j in lifecycle.claim(b.id, 0, 10, worker="w", lease=True)[:4]:
        lifecycle.advance(b.id, [Advance(j.attempt_id)])
    assert lifecycle.delete_board(b.id) == 30
    assert [x["name"] for x in queries.list_boards()] == ["keep"]
    assert queries.board_status(keep.id)["total"] == 1
    assert queries.board_status(b.id)["total"] == 0
