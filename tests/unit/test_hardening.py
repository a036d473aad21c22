"""Hostile and careless input (issue 8), in-process: a fast 4xx for each,
nothing written, no cross-site writes, no guessable names."""
from __future__ import annotations

import gzip
import json
import zlib

import pytest

from jobserver import create_app, insights, lifecycle, queries
from jobserver.dialect import close_writer
from jobserver.extensions import db
from tests.conftest import ADMIN

H = {"jobix": "77"}


def api_board(client, name="h"):
    r = client.post("/api/v1/boards", headers=ADMIN, json={"name": name})
    assert r.status_code == 201, r.json
    return {"Authorization": f"Bearer {r.json['token']}"}


# ------------------------------------------------- 1. stage numbers bounded

@pytest.mark.parametrize("path", ["/lifetime/9223372036854775807/1", "/lifetime/10001/1",
                                  "/get/99999999999999999999999", "/update_job/1/10001"])
def test_huge_stage_numbers_are_refused(client, path):
    client.get("/init/0/30/0", headers=H)
    r = client.get(path, headers=H)
    assert r.status_code == 400 and "stage" in r.json["message"]


def test_pages_list_only_the_stages_that_exist(client):
    b = lifecycle.ensure_board(78)  # no /init: no declared stages
    lifecycle.push(b.id, [("a", "null", 0), ("b", "null", 10_000)])
    assert [s["stage"] for s in queries.board_summary(b.id)["stages"]] == [0, 10_000]
    assert [s["stage"] for s in insights.overview(b.id)["stages"]] == [0, 10_000]
    r = client.post("/set", headers={"jobix": "78"},
                    data=json.dumps({"9": {"jobstage": 10_001, "jobcmd": 1}}))
    assert r.status_code == 400


# ------------------------------------------------------------- 2. body sizes

def test_a_decompression_bomb_is_refused_while_inflating(app, client):
    app.config["MAX_DECODED_MB"] = 8
    bomb = zlib.compress(b"[" + b" " * (64 << 20) + b"]", 9)  # 64 MB of blanks, ~64 KB
    assert len(bomb) < 200_000
    r = client.post("/set", data=bomb, headers=H)
    assert r.status_code == 413 and "MAX_DECODED_MB" in r.json["message"]


def test_a_plain_body_over_the_limit_is_refused(tmp_path):
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'b.sqlite'}", "SWEEP_MODE": "off",
                      "MAX_BODY_MB": 1})
    r = app.test_client().post("/set", data=b" " * (2 << 20), headers=H)
    assert r.status_code == 413
    with app.app_context():
        close_writer(db.engine)
    assert _default_body_limit(tmp_path) == 256 << 20  # sized for a million-job push


def _default_body_limit(tmp_path) -> int:
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'd.sqlite'}", "SWEEP_MODE": "off"})
    with app.app_context():
        close_writer(db.engine)
    return app.config["MAX_CONTENT_LENGTH"]


def test_a_payload_over_its_limit_is_refused_and_nothing_written(app, client):
    app.config["MAX_PAYLOAD_KB"] = 1
    auth = api_board(client)
    jobs = [{"key": "ok", "payload": "x"}, {"key": "big", "payload": "x" * 2000}]
    r = client.post("/api/v1/boards/h/jobs", json=jobs, headers=auth)
    assert r.status_code == 413 and "big" in r.json["message"] and "MAX_PAYLOAD_KB" in r.json["message"]
    assert client.get("/api/v1/boards/h", headers=auth).json["total"] == 0
    body = zlib.compress(json.dumps({"1": {"jobstage": 0, "jobcmd": "y" * 2000}}).encode())
    assert client.post("/set", data=body, headers=H).status_code == 413


def test_a_truncated_gzip_body_is_refused_and_nothing_written(client):
    auth = api_board(client)
    body = gzip.compress(json.dumps([{"key": f"k{i}"} for i in range(1000)]).encode())
    cut = body[:len(body) * 2 // 3]
    r = client.post("/api/v1/boards/h/jobs", data=cut, headers={**auth, "Content-Encoding": "gzip"})
    assert r.status_code == 400 and "cut short" in r.json["message"]
    assert client.get("/api/v1/boards/h", headers=auth).json["total"] == 0
    zcut = zlib.compress(json.dumps({"1": {"jobstage": 0, "jobcmd": 1}}).encode())[:-6]
    assert client.post("/set", data=zcut, headers=H).status_code == 400


# ------------------------------------------------- 5. no 500 on odd input

@pytest.mark.parametrize("path", ["/get?page=" + "9" * 30, "/get/rows?page=" + "9" * 30,
                                  "/get?page=2000000"])
def test_huge_page_numbers_are_a_400(client, path):
    client.get("/init/0/30/0", headers=H)
    r = client.get(path, headers=H)
    assert r.status_code == 400 and "page" in r.json["message"]


def test_huge_integers_are_a_400_everywhere(client):
    assert client.get("/get/0", headers={"jobix": "9" * 40}).status_code == 403
    auth = api_board(client)
    for body in ({"stage": 0, "worker": "w", "to_stage": 2**70},
                 {"stage": 0, "worker": "w", "n": 2**64}):
        assert client.post("/api/v1/boards/h/claim", json=body, headers=auth).status_code == 400
    assert client.post("/api/v1/boards/h/fail", json={"attempt_id": 2**63},
                       headers=auth).status_code == 400
    assert client.post("/api/v1/boards/h/release", json={"attempt_ids": [2**64]},
                       headers=auth).status_code == 400
    assert client.get("/api/v1/boards/h/jobs?cursor=" + "9" * 30, headers=auth).status_code == 400
    assert client.get("/boards/h/jobs.json?page=" + "9" * 30).status_code == 400
    assert client.put("/api/v1/boards/h/stages/" + "9" * 30, json={"lifetime": 1},
                      headers=auth).status_code in (400, 404)


def test_deeply_nested_json_is_a_400(client):
    deep = b"[" * 100_000 + b"]" * 100_000
    assert client.post("/set", data=deep, headers=H).status_code == 400
    auth = api_board(client)
    r = client.post("/api/v1/boards/h/claim", data=deep, headers=auth)
    assert r.status_code == 400 and "nested" in r.json["message"]


def test_non_ascii_credentials_are_refused_not_crashed(tmp_path):
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'c.sqlite'}", "SWEEP_MODE": "off",
                      "ADMIN_TOKEN": "adm", "VIEW_PASSWORD": "pw"})
    c = app.test_client()
    import base64

    basic = base64.b64encode("u:pässwörd".encode()).decode()
    assert c.get("/boards/x", headers={"Authorization": f"Basic {basic}"}).status_code == 401
    r = c.post("/api/v1/boards", json={"name": "x"},
               headers={"Authorization": "Bearer tökén".encode().decode("latin-1")})
    assert r.status_code == 401
    with app.app_context():
        close_writer(db.engine)


def test_405_says_what_is_allowed(client):
    r = client.delete("/api/v1/boards/h/claim")
    assert r.status_code == 405 and set(r.headers["Allow"].split(", ")) >= {"POST"}


# ------------------------------------------------- 3. no guessable names

def test_classic_names_are_keyed_not_a_plain_hash(client, app):
    import hashlib

    client.get("/init/0/30/0", headers={"jobix": "1234"})
    name = lifecycle.find_board(1234).name
    assert name != "board-" + hashlib.sha256(b"1234").hexdigest()[:10]
    assert name == lifecycle.classic_board_name(1234)
    assert name != lifecycle.classic_board_name(1234, b"another server's secret")


def test_boards_named_the_old_way_are_renamed_at_start(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setenv("JOBSERVER_INSTANCE", str(tmp_path / "inst"))
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    app = create_app({"DATABASE_URL": url, "SWEEP_MODE": "off"})
    with app.app_context():
        b = lifecycle.ensure_board(5)
        old = "board-" + hashlib.sha256(b"5").hexdigest()[:10]
        with db.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE boards SET name = ? WHERE id = ?", (old, b.id))
        close_writer(db.engine)
        db.engine.dispose()
    app = create_app({"DATABASE_URL": url, "SWEEP_MODE": "off"})
    with app.app_context():
        assert lifecycle.board_by_name(old) is None
        assert queries.list_boards()[0]["name"] == lifecycle.classic_board_name(5)
        close_writer(db.engine)
        db.engine.dispose()


# ------------------------------------------------- 4. no cross-site writes

@pytest.mark.parametrize("path", ["/update_job/1/2?jobix=77", "/lifetime/1/1000?jobix=77",
                                  "/get/0?jobix=77", "/init/0/1/0?jobix=77",
                                  "/check_stages/1/0?jobix=77"])
def test_writes_take_the_jobix_from_the_header_only(client, path):
    client.get("/init/0/30/0", headers=H)
    client.post("/set", data=json.dumps({"1": {"jobstage": 0, "jobcmd": 1}}), headers=H)
    r = client.get(path)  # what an <img src=...> on another site sends
    assert r.status_code == 403 and "header" in r.json["message"]
    assert client.get("/lifetime?jobix=77").status_code == 200  # read-only pages keep it
    assert queries.job_detail(lifecycle.find_board(77).id, "1")["stage"] == 0


def test_a_cross_site_form_cannot_add_a_job_or_create_a_board(client):
    form = {"Content-Type": "text/plain", "Origin": "http://evil.example"}
    r = client.post("/set?jobix=77", data='{"1": {"jobstage": 0, "jobcmd": "rm -rf ~"}}',
                    headers=form)
    assert r.status_code == 403
    r = client.post("/api/v1/boards", data='{"name": "evil"}', headers=form)
    assert r.status_code == 403
    assert lifecycle.board_by_name("evil") is None
    # the same writes from the server's own pages go through
    own = {"Origin": "http://localhost"}
    assert client.post("/api/v1/boards", json={"name": "mine"}, headers={**own, **ADMIN}).status_code == 201


def test_revocation_takes_effect_at_once(client):
    auth = api_board(client)
    assert client.get("/api/v1/boards/h", headers=auth).status_code == 200
    b = lifecycle.board_by_name("h")
    lifecycle.revoke_token(b.id, lifecycle.list_tokens(b.id)[0]["id"])
    assert client.get("/api/v1/boards/h", headers=auth).status_code == 401


# ------------------------------------------------- 7. closed by default

def test_board_creation_is_closed_without_an_admin_token(tmp_path):
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'o.sqlite'}", "SWEEP_MODE": "off"})
    c = app.test_client()
    r = c.post("/api/v1/boards", json={"name": "anyone"})
    assert r.status_code == 403 and "jobserver board create" in r.json["message"]
    assert "JOBSERVER_ADMIN_TOKEN" in r.json["message"]
    with app.app_context():
        assert lifecycle.board_by_name("anyone") is None
        close_writer(db.engine)


def test_status_counts_jobs_held_by_lost_workers(client):
    auth = api_board(client, "orph")
    client.post("/api/v1/boards/orph/jobs", json=[{"key": "a"}, {"key": "b"}], headers=auth)
    for w in ("dies", "lives"):
        client.post("/api/v1/boards/orph/claim", json={"stage": 0, "worker": w}, headers=auth)
    assert client.get("/api/v1/boards/orph", headers=auth).json["orphaned"] == {}
    b = lifecycle.board_by_name("orph")
    import time as _t

    client.post("/api/v1/boards/orph/heartbeat", json={"worker": "lives"}, headers=auth)
    lifecycle.sweep(board_id=b.id, now=_t.time() + 30, lost_after=20)  # "dies" went silent
    client.post("/api/v1/boards/orph/heartbeat", json={"worker": "lives"}, headers=auth)
    assert client.get("/api/v1/boards/orph", headers=auth).json["orphaned"] == {"1": 1}


def test_lone_surrogates_are_a_400_not_a_500(client):
    auth = api_board(client, "sur")
    body = b'[{"key": "a\\ud800b"}]'
    r = client.post("/api/v1/boards/sur/jobs", data=body, headers=auth)
    assert r.status_code == 400 and "Unicode" in r.json["message"]
    r = client.post("/api/v1/boards/sur/claim", headers=auth,
                    data=b'{"stage": 0, "worker": "\\udc00"}')
    assert r.status_code == 400
    ok = client.post("/api/v1/boards/sur/jobs", data='[{"key": "\\ud83d\\ude00"}]'.encode(),
                     headers=auth)
    assert ok.status_code == 200 and ok.json["created"] == 1  # a pair is fine


def test_nul_characters_never_reach_the_database(client):
    """PostgreSQL's text cannot hold a NUL: keys and names refuse it, output
    keeps a replacement character, lookups find nothing (on both databases)."""
    auth = api_board(client, "nul")
    assert client.post("/api/v1/boards/nul/jobs", json=[{"key": "a\x00"}],
                       headers=auth).status_code == 400
    assert client.post("/api/v1/boards/nul/claim", json={"stage": 0, "worker": "w\x00"},
                       headers=auth).status_code == 400
    client.post("/api/v1/boards/nul/jobs", json=[{"key": "a"}], headers=auth)
    job = client.post("/api/v1/boards/nul/claim", json={"stage": 0, "worker": "w"},
                      headers=auth).json["jobs"][0]
    r = client.post("/api/v1/boards/nul/fail", headers=auth, json={
        "attempt_id": job["attempt_id"], "error": "bad\x00byte", "log": "out\x00put"})
    assert r.status_code == 200
    detail = client.get("/api/v1/boards/nul/jobs/a", headers=auth).json
    assert detail["error"] == "bad\ufffdbyte"
    assert client.get("/api/v1/boards/nul/jobs/a%00", headers=auth).status_code == 404
    assert client.get("/api/v1/boards/n%00ul", headers=auth).status_code in (403, 404)
    assert client.get("/boards/nul?key=a%00").status_code == 200


def test_a_literal_backslash_u_is_text_not_a_surrogate(client):
    auth = api_board(client, "path")
    r = client.post("/api/v1/boards/path/jobs", headers=auth,
                    data=b'[{"key": "w", "payload": "C:\\\\ud800\\\\file"}]')
    assert r.status_code == 200 and r.json["created"] == 1


def test_a_bomb_is_refused_by_its_ratio_long_before_the_size_cap(app, client):
    bomb = zlib.compress(b"[" + b" " * (200 << 20) + b"]", 9)  # 200 MB in ~200 KB
    assert app.config["MAX_DECODED_MB"] >= 256
    r = client.post("/set", data=bomb, headers=H)
    assert r.status_code == 413 and "MAX_INFLATE_RATIO" in r.json["message"]
    honest = zlib.compress(json.dumps({str(i): {"jobstage": 0, "jobcmd": {"seed": i}}
                                       for i in range(50_000)}).encode())
    assert client.post("/set", data=honest, headers=H).status_code == 200


@pytest.mark.parametrize("body", [
    b'[{"key": "\\\\ud800\\udc00"}]',  # an escaped backslash, then a lone low surrogate
    b'[{"key": "a\\ud800"}]'])
def test_no_lone_surrogate_reaches_the_database_however_spelled(client, body):
    auth = api_board(client, "sur2")
    assert client.post("/api/v1/boards/sur2/jobs", data=body, headers=auth).status_code == 400
    claim = body.replace(b'[{"key"', b'{"stage": 0, "worker"').replace(b"}]", b"}")
    assert client.post("/api/v1/boards/sur2/claim", data=claim, headers=auth).status_code == 400
    client.post("/api/v1/boards/sur2/jobs", json=[{"key": "x"}], headers=auth)
    job = client.post("/api/v1/boards/sur2/claim", json={"stage": 0, "worker": "w"},
                      headers=auth).json["jobs"][0]
    r = client.post("/api/v1/boards/sur2/fail", headers=auth, data=(
        b'{"attempt_id": %d, "error": "e\\ud800", "log": "l\\udc00"}' % job["attempt_id"]))
    assert r.status_code == 200  # output is kept, the odd character replaced


def test_heartbeat_keys_in_other_digits_are_ignored(client):
    auth = api_board(client, "hb")
    r = client.post("/api/v1/boards/hb/heartbeat", headers=auth,
                    json={"worker": "w", "logs": {"\u00b2": "x"}, "samples": {"\u0663": {}}})
    assert r.status_code == 200


def test_a_malformed_origin_is_refused_not_crashed(client):
    r = client.post("/api/v1/boards", headers={"Origin": "http://["}, json={"name": "o"})
    assert r.status_code == 403


def test_a_second_gzip_member_is_refused(client):
    auth = api_board(client, "gz")
    body = (gzip.compress(json.dumps([{"key": "a"}]).encode())
            + gzip.compress(json.dumps([{"key": "b"}]).encode()))
    r = client.post("/api/v1/boards/gz/jobs", data=body, headers=auth)
    assert r.status_code == 400
    assert client.get("/api/v1/boards/gz", headers=auth).json["total"] == 0


def test_orphaned_reads_only_the_lost_workers_open_attempts(sqlite_app):
    """One index seek per lost worker (board, worker, open), never a walk over
    the board's attempt history (the plan, on SQLite)."""
    from sqlalchemy import text
    from sqlalchemy.dialects import sqlite

    sql = str(queries.lost_open_attempts(1).compile(dialect=sqlite.dialect(),
                                                    compile_kwargs={"literal_binds": True}))
    plan = " ".join(r[3] for r in db.session.execute(text("EXPLAIN QUERY PLAN " + sql)))
    assert "ix_attempts_worker (board_id=? AND worker=? AND ended_at=?)" in plan, plan
