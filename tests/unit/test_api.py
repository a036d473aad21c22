"""The JSON API, in-process: every route, its errors, and what they write."""
from __future__ import annotations

import gzip
import json
import time

import pytest
from openapi_spec_validator import validate

from jobserver import lifecycle
from tests.conftest import ADMIN


@pytest.fixture
def board(client):
    r = client.post("/api/v1/boards", headers=ADMIN, json={"name": "sims", "lifetimes": [0, 1, 0],
                                            "stage_names": ["todo", "running", "done"],
                                            "max_attempts": 2})
    assert r.status_code == 201
    return {"Authorization": f"Bearer {r.json['token']}"}


def push(client, auth, n, start=0):
    jobs = [{"key": f"j{i}", "payload": {"i": i}} for i in range(start, start + n)]
    return client.post("/api/v1/boards/sims/jobs", json=jobs, headers=auth)


def claim(client, auth, n=1, worker="w1"):
    r = client.post("/api/v1/boards/sims/claim", json={"stage": 0, "n": n, "worker": worker},
                    headers=auth)
    assert r.status_code == 200, r.json
    return r.json["jobs"]


def status(client, auth):
    return client.get("/api/v1/boards/sims", headers=auth).json


def test_openapi_document_validates(client):
    doc = client.get("/api/v1/openapi.json").json
    validate(doc)
    assert "/boards/{name}/claim" in doc["paths"]


def test_create_board_and_summary(client, board):
    s = status(client, board)
    assert s["board"] == "sims" and s["max_attempts"] == 2
    assert [st["name"] for st in s["stages"]] == ["todo", "running", "done"]
    dup = client.post("/api/v1/boards", headers=ADMIN, json={"name": "sims"})
    assert dup.status_code == 409 and dup.json["error"] == "Conflict"
    bad = client.post("/api/v1/boards", headers=ADMIN, json={"name": "no spaces allowed"})
    assert bad.status_code == 400
    taken = client.post("/api/v1/boards", headers=ADMIN, json={"name": "board-0123456789"})
    assert taken.status_code == 400 and "classic" in taken.json["message"]


def test_push_array_json_lines_gzip_idempotent(client, board):
    assert push(client, board, 3).json == {"created": 3, "existing": 0, "changed": 0,
                                           "changed_keys": []}
    lines = "\n".join(json.dumps({"key": f"j{i}", "payload": {"i": i}}) for i in range(5))
    r = client.post("/api/v1/boards/sims/jobs", data=gzip.compress(lines.encode()),
                    headers={**board, "Content-Encoding": "gzip",
                             "Content-Type": "application/x-ndjson"})
    assert r.json == {"created": 2, "existing": 3, "changed": 0, "changed_keys": []}
    assert status(client, board)["counts"] == {"0": 5}


def test_claim_advance_and_stale_attempt_conflict(client, board):
    push(client, board, 3)
    jobs = claim(client, board, n=2)
    assert [j["key"] for j in jobs] == ["j0", "j1"] and jobs[0]["payload"] == {"i": 0}
    ids = [j["attempt_id"] for j in jobs]
    r = client.post("/api/v1/boards/sims/advance", headers=board,
                    json={"attempts": [{"attempt_id": ids[0], "result": {"ok": 1},
                                        "log": "converged after 12 steps"},
                                       {"attempt_id": ids[1]}]})
    assert r.json == {"advanced": 2, "cancelled": 0}
    assert status(client, board)["counts"] == {"0": 1, "2": 2}
    # reporting again: stale, 409, and nothing changes
    (third,) = claim(client, board)
    r = client.post("/api/v1/boards/sims/advance", headers=board,
                    json={"attempts": [{"attempt_id": third["attempt_id"]},
                                       {"attempt_id": ids[0]}]})
    assert r.status_code == 409 and r.json["details"]["stale_attempts"] == [ids[0]]
    assert status(client, board)["counts"] == {"1": 1, "2": 2}
    detail = client.get("/api/v1/boards/sims/jobs/j0", headers=board).json
    assert detail["result"] == {"ok": 1} and detail["attempts_history"][0]["outcome"] == "advanced"
    assert detail["log_tail"] == "converged after 12 steps"  # a success keeps its log too


def test_fail_retries_then_fails_with_error(client, board):
    push(client, board, 1)
    (a,) = claim(client, board)
    r = client.post("/api/v1/boards/sims/fail", headers=board,
                    json={"attempt_id": a["attempt_id"], "error": "boom", "exit_code": 3,
                          "log": "stderr tail"})
    assert r.json == {"outcome": "requeued"}
    (b,) = claim(client, board)
    assert b["attempt"] == 2
    r = client.post("/api/v1/boards/sims/fail", headers=board,
                    json={"attempt_id": b["attempt_id"], "error": "boom again"})
    assert r.json == {"outcome": "failed"}
    s = status(client, board)
    assert s["failed"] == 1 and s["counts"] == {}
    d = client.get("/api/v1/boards/sims/jobs/j0", headers=board).json
    assert d["state"] == "failed" and d["error"] == "boom again"
    assert [h["exit_code"] for h in d["attempts_history"]] == [3, None]
    assert d["log_tail"] == "stderr tail"


def test_release_does_not_count_an_attempt(client, board):
    push(client, board, 1)
    (a,) = claim(client, board)
    r = client.post("/api/v1/boards/sims/release", headers=board,
                    json={"attempt_ids": [a["attempt_id"]]})
    assert r.json == {"released": 1}
    (b,) = claim(client, board)
    assert b["attempt"] == 1


def test_cancel_reaches_running_attempts_through_heartbeat(client, board):
    push(client, board, 3)
    (a,) = claim(client, board)
    r = client.post("/api/v1/boards/sims/cancel", headers=board, json={"keys": ["j0", "j1"]})
    assert r.json == {"cancelled": 2}
    hb = client.post("/api/v1/boards/sims/heartbeat", headers=board,
                     json={"worker": "w1", "running": [a["attempt_id"], 999999],
                           "samples": {str(a["attempt_id"]): {"cpu": 50.0, "rss": 1000}},
                           "host": "node1", "pid": 42})
    assert hb.json == {"cancelled": [a["attempt_id"]], "lost": [999999]}
    assert status(client, board)["cancelled"] == 2
    assert [j["key"] for j in claim(client, board, n=5)] == ["j2"]


def test_heartbeat_keeps_a_slow_job_leased(client, board, app):
    push(client, board, 1)
    (a,) = claim(client, board)
    b = lifecycle.board_by_name("sims")
    later = time.time() + 50  # stage 1 lives one minute
    client.post("/api/v1/boards/sims/heartbeat", headers=board,
                json={"worker": "w1", "running": [a["attempt_id"]]})
    assert lifecycle.sweep(board_id=b.id, now=later) == lifecycle.SweepResult(0, 0, 0)
    assert lifecycle.sweep(board_id=b.id, now=time.time() + 61).requeued == 1
    workers = client.get("/api/v1/boards/sims/workers", headers=board).json["workers"]
    assert workers[0]["name"] == "w1" and workers[0]["state"] == "lost"
    assert status(client, board)["lost_workers"] == 1


def test_list_jobs_with_cursor(client, board):
    push(client, board, 25)
    seen, cursor = [], None
    while True:
        q = "?limit=10" + (f"&cursor={cursor}" if cursor else "")
        page = client.get("/api/v1/boards/sims/jobs" + q, headers=board).json
        seen += [j["key"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"j{i}" for i in range(25)]
    claim(client, board, n=3)
    running = client.get("/api/v1/boards/sims/jobs?stage=1", headers=board).json["jobs"]
    assert len(running) == 3


@pytest.mark.parametrize("headers,status_code", [
    ({}, 401), ({"Authorization": "Bearer nope"}, 401), ({"Authorization": "Basic x"}, 401)])
def test_bad_tokens(client, board, headers, status_code):
    r = client.get("/api/v1/boards/sims", headers=headers)
    assert r.status_code == status_code and r.json["message"]


def test_token_of_another_board_is_403(client, board):
    other = client.post("/api/v1/boards", headers=ADMIN, json={"name": "other"}).json["token"]
    r = client.get("/api/v1/boards/sims", headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 403
    r = client.get("/api/v1/boards/nope", headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 404


@pytest.mark.parametrize("path,body", [
    ("/jobs", b"not json"),
    ("/jobs", json.dumps([{"key": "a"}, {"payload": 1}]).encode()),
    ("/jobs", json.dumps([{"key": "a", "stage": -1}]).encode()),
    ("/jobs", json.dumps([{"key": "a", "stage": 9}]).encode()),
    ("/claim", json.dumps({"stage": 0}).encode()),
    ("/claim", json.dumps({"stage": 0, "n": 5000, "worker": "w"}).encode()),
    ("/claim", json.dumps({"stage": "0", "worker": "w"}).encode()),
    ("/advance", json.dumps({"attempts": [{"nope": 1}]}).encode()),
    ("/fail", json.dumps({"error": "x"}).encode()),
    ("/heartbeat", json.dumps({"running": [1]}).encode()),
])
def test_malformed_bodies_are_4xx_json_and_write_nothing(client, board, path, body):
    r = client.post("/api/v1/boards/sims" + path, data=body,
                    headers={**board, "Content-Type": "application/json"})
    assert 400 <= r.status_code < 500 and r.json["error"] and r.json["message"]
    s = status(client, board)
    assert s["total"] == 0 and s["alive_workers"] == 0


def test_unknown_job_is_404(client, board):
    r = client.get("/api/v1/boards/sims/jobs/nope", headers=board)
    assert r.status_code == 404 and r.json["error"] == "Not Found"


def test_admin_token_guards_board_creation(tmp_path):
    from jobserver import create_app

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'a.sqlite'}", "SWEEP_MODE": "off",
                      "ADMIN_TOKEN": "letmein"})
    c = app.test_client()
    assert c.post("/api/v1/boards", json={"name": "x"}).status_code == 401
    r = c.post("/api/v1/boards", json={"name": "x"}, headers={"Authorization": "Bearer letmein"})
    assert r.status_code == 201
