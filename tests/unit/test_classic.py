"""The classic protocol (shared/PROTOCOL.md), route by route, in-process."""
from __future__ import annotations

import gzip
import json
import time
import zlib

import pytest
from sqlalchemy import func, select

from jobserver import lifecycle
from jobserver.extensions import db
from jobserver.models import Board, Event, Job

H = {"jobix": "42"}


def body(jobs: dict) -> bytes:
    return zlib.compress(json.dumps(jobs).encode())


def push(client, n: int, stage: int = 0, headers=H, start: int = 0):
    jobs = {str(i): {"jobstage": stage, "jobcmd": ["run", i]} for i in range(start, start + n)}
    return client.post("/set", data=body(jobs), headers=headers)


def n_rows(model) -> int:
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def test_greeting_for_scripts_page_for_browsers(client):
    r = client.get("/")
    assert r.status_code == 200 and r.mimetype == "text/plain" and "Hello" in r.text
    r = client.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.mimetype == "text/html" and "Job lists" in r.text


def test_init_sets_once_and_reads_back(client):
    r = client.get("/init/60/30.5/0", headers=H)
    assert r.json == {"0": 60, "1": 30.5, "2": 0}
    assert client.get("/init/1/1/1/1", headers=H).json == {"0": 60, "1": 30.5, "2": 0}
    assert client.get("/init", headers=H).json == {"0": 60, "1": 30.5, "2": 0}


@pytest.mark.parametrize("encode", [
    lambda b: zlib.compress(b), lambda b: gzip.compress(b), lambda b: b])
def test_set_accepts_zlib_gzip_and_plain(client, encode):
    jobs = {"1": {"jobstage": 0, "jobcmd": {"cmd": "sim", "n": 1}}}
    r = client.post("/set", data=encode(json.dumps(jobs).encode()),
                    headers={**H, "Content-Type": "application/json", "content-encoding": "gzip"})
    assert r.status_code == 200 and r.text == "Accepted to 42!"
    assert client.get("/get/0", headers=H).json == {
        "jobid": 1, "jobcmd": {"cmd": "sim", "n": 1}, "jobstage": 0, "jobix": 42}


def test_push_twice_is_safe(client):
    push(client, 5)
    push(client, 8)
    assert n_rows(Job) == 8


def test_claim_then_nada(client):
    push(client, 2)
    got = {client.get("/get/0", headers=H).json["jobid"] for _ in range(2)}
    assert got == {0, 1}
    r = client.get("/get/0", headers=H)
    assert r.status_code == 200 and r.json == "nada"


def test_claim_to_explicit_next_stage(client):
    push(client, 1, stage=2)
    assert client.get("/get/2/7", headers=H).json["jobstage"] == 2
    assert db.session.execute(select(Job.stage)).scalar_one() == 7


def test_update_job_with_and_without_body(client):
    push(client, 2)
    client.get("/get/0", headers=H)
    r = client.get("/update_job/0/2", headers=H)
    assert r.text == "Success, job 0 was updated to stage 2!"
    r = client.post("/update_job/1/4", headers=H,
                    data=zlib.compress(json.dumps({"filename": "r.dat", "jobcmd": "x"}).encode()))
    assert r.status_code == 200
    job = db.session.execute(select(Job).where(Job.key == "1")).scalar_one()
    assert (job.stage, job.filename, job.payload) == (4, "r.dat", '"x"')


@pytest.mark.parametrize("path", ["/get/0", "/init/1/2", "/update_job/1/2", "/check_stages",
                                  "/lifetime/0", "/init"])
def test_missing_jobix_is_403(client, path):
    r = client.get(path)
    assert r.status_code == 403 and "jobix" in r.json["message"]


def test_non_integer_jobix_is_403_and_set_without_jobix_writes_nothing(client):
    assert client.get("/get/0", headers={"jobix": "abc"}).status_code == 403
    assert client.post("/set", data=body({"1": {"jobstage": 0}})).status_code == 403
    assert n_rows(Board) == 0 and n_rows(Job) == 0


@pytest.mark.parametrize("data", [
    b"not json at all",
    zlib.compress(b"{broken"),
    b"\x78\x9c garbage that claims to be zlib",
    json.dumps([1, 2]).encode(),
    json.dumps({"1": {"jobstage": 0}, "x": {"jobstage": 0}}).encode(),
    json.dumps({"1": {"jobstage": 0}, "2": {"jobstage": -1}}).encode(),
    json.dumps({"1": {"jobstage": 0}, "2": {"jobcmd": "no stage"}}).encode(),
    json.dumps({"1": {"jobstage": "0"}}).encode(),
])
def test_malformed_set_is_400_and_writes_nothing(client, data):
    r = client.post("/set", data=data, headers=H)
    assert r.status_code == 400 and r.json["error"] == "Bad Request" and r.json["message"]
    assert n_rows(Job) == 0 and n_rows(Event) == 0


@pytest.mark.parametrize("path", ["/get/x", "/get/-1", "/get/0/y", "/update_job/a/2",
                                  "/update_job/1/b", "/init/5/abc", "/init/-2", "/lifetime/0/nan",
                                  "/check_stages/a/0"])
def test_malformed_paths_are_400(client, path):
    push(client, 2)
    before = n_rows(Event)
    assert client.get(path, headers=H).status_code == 400
    assert n_rows(Event) == before


def test_unknown_stage_is_404_and_writes_nothing(client):
    client.get("/init/60/60/0", headers=H)
    push(client, 1)
    assert client.post("/set", data=body({"9": {"jobstage": 3}}), headers=H).status_code == 404
    assert client.get("/get/2", headers=H).status_code == 404
    assert client.get("/update_job/0/5", headers=H).status_code == 404
    assert n_rows(Job) == 1
    assert db.session.execute(select(Job.stage)).scalar_one() == 0


def test_update_unknown_job_is_404(client):
    push(client, 1)
    r = client.get("/update_job/5/2", headers=H)
    assert r.status_code == 404 and "no job 5" in r.json["message"]


def test_update_job_bad_body_is_400_and_job_unchanged(client):
    push(client, 1)
    r = client.post("/update_job/0/2", data=b"{not json", headers=H)
    assert r.status_code == 400
    assert db.session.execute(select(Job.stage)).scalar_one() == 0


def test_one_jobix_never_sees_another(client):
    push(client, 3, headers={"jobix": "1"})
    other = {"jobix": "2"}
    push(client, 1, headers=other, start=100)
    assert client.get("/get/0", headers=other).json["jobid"] == 100
    assert client.get("/get/0", headers=other).json == "nada"
    assert client.get("/update_job/0/2", headers=other).status_code == 404
    assert client.get("/get/rows", headers=other).json["rows"][0]["id"] == "100"
    assert client.get("/get/0", headers={"jobix": "3"}).json == "nada"  # no board: nada


def test_check_stages_and_requeue_by_hand(client, app):
    client.get("/init/0/0.0001/0", headers=H)  # 6 ms lifetime at stage 1
    lifecycle.set_board_options(lifecycle.find_board(42).id, auto_requeue=False)
    push(client, 2)
    client.get("/get/0", headers=H)
    time.sleep(0.05)
    assert client.get("/check_stages", headers=H).json == {"Are all simulations within time frame?": 0}
    r = client.get("/check_stages/1/0", headers=H).json
    assert r["n_bad_jobs were degraded:"] == 1
    assert client.get("/check_stages", headers=H).json == {"Are all simulations within time frame?": 1}


def test_lifetime_routes(client):
    client.get("/init/60/30/0", headers=H)
    assert client.get("/lifetime/1", headers=H).json == 30
    assert client.get("/lifetime/1/0.5", headers=H).json == {"0": 60, "1": 0.5, "2": 0}
    assert client.get("/lifetime", headers=H).json == {"0": 60, "1": 0.5, "2": 0}
    assert client.get("/lifetime/7", headers=H).status_code == 404
    page = client.get("/lifetime?jobix=42", headers={"Accept": "text/html"})
    assert "Lifetimes of" in page.text and "0.5" in page.text


def test_job_list_page_paginates_and_escapes(client, app):
    jobs = {str(i): {"jobstage": 0, "jobcmd": i} for i in range(120)}
    client.post("/set", data=body(jobs), headers=H)
    client.get("/get/0", headers=H)
    client.post("/update_job/0/2", headers=H,
                data=json.dumps({"filename": "<script>alert(1)</script>"}).encode())
    page = client.get("/get?jobix=42", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert page.text.count("<tr class=") <= app.config["PAGE_SIZE"] + 10
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;" in page.text
    assert 'id="next"' in page.text
    p3 = client.get("/get/rows?page=3", headers=H).json
    assert p3["page"] == 3 and len(p3["rows"]) == 20 and not p3["has_next"]


def test_job_list_page_needs_jobix(client):
    assert client.get("/get").status_code == 403
    r = client.get("/get", headers={"Accept": "text/html"})
    assert r.status_code == 403 and "<form" in r.text


def test_progress_counts(client):
    client.get("/init/0/0/0", headers=H)
    push(client, 4)
    client.get("/get/0", headers=H)
    client.get("/update_job/0/2", headers=H)
    client.get("/get/0", headers=H)
    s = client.get("/get", headers=H).json["summary"]
    assert [st["count"] for st in s["stages"]] == [2, 1, 1]
    assert s["total"] == 4 and s["done"] == 1 and s["progress"] == 37.5
