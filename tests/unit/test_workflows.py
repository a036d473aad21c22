"""Workflows (issue 9), server side, on SQLite and PostgreSQL: jobs that run
after others, priorities, retry and resume, per-job attempts, a cap on
running jobs, notes written by running jobs."""
from __future__ import annotations

import importlib
import threading
import time

import pytest

from jobserver import create_app, lifecycle, queries
from jobserver.dialect import close_writer
from jobserver.extensions import db
from jobserver.lifecycle import Advance, Extras, NewJob
from tests.conftest import ADMIN, sqlite_at_revision


def api_board(client, name="wf", **spec):
    r = client.post("/api/v1/boards", headers=ADMIN, json={"name": name, **spec})
    assert r.status_code == 201, r.json
    return {"Authorization": f"Bearer {r.json['token']}"}


def push(client, auth, jobs, name="wf", strict=False):
    return client.post(f"/api/v1/boards/{name}/jobs" + ("?strict=true" if strict else ""),
                       json=jobs, headers=auth)


def claim(client, auth, n=10, name="wf", worker="w1", stage=0):
    r = client.post(f"/api/v1/boards/{name}/claim",
                    json={"stage": stage, "n": n, "worker": worker}, headers=auth)
    assert r.status_code == 200, r.json
    return r.json["jobs"]


def advance(client, auth, jobs, name="wf"):
    r = client.post(f"/api/v1/boards/{name}/advance",
                    json={"attempts": [{"attempt_id": j["attempt_id"]} for j in jobs]},
                    headers=auth)
    assert r.status_code == 200, r.json


def job(client, auth, key, name="wf"):
    r = client.get(f"/api/v1/boards/{name}/jobs/{key}", headers=auth)
    assert r.status_code == 200, r.json
    return r.json


def status(client, auth, name="wf"):
    return client.get(f"/api/v1/boards/{name}", headers=auth).json


DIAMOND = [{"key": "d", "after": ["b", "c"]}, {"key": "b", "after": ["a"]},
           {"key": "c", "after": ["a"]}, {"key": "a"}]


# ------------------------------------------------------------ dependencies

def test_a_diamond_is_claimed_in_order(client):
    auth = api_board(client)
    r = push(client, auth, DIAMOND)  # downstream first in the push: order does not matter
    assert r.json["created"] == 4
    assert status(client, auth)["blocked"] == 3
    assert job(client, auth, "d")["state"] == "blocked"
    assert sorted(job(client, auth, "d")["blocked_by"]) == ["b", "c"]
    got = claim(client, auth)
    assert [j["key"] for j in got] == ["a"]  # b, c, d are blocked
    assert claim(client, auth) == []
    advance(client, auth, got)  # a is done: b and c are released in that same report
    assert status(client, auth)["blocked"] == 1
    got = claim(client, auth)
    assert sorted(j["key"] for j in got) == ["b", "c"]
    advance(client, auth, got[:1])
    assert claim(client, auth) == []  # d still waits for the other one
    assert job(client, auth, "d")["blocked_by"] == [got[1]["key"]]
    advance(client, auth, got[1:])
    assert [j["key"] for j in claim(client, auth)] == ["d"]
    d = job(client, auth, "d")
    assert [(u["key"], u["state"]) for u in d["after"]] == [("b", "done"), ("c", "done")]
    assert job(client, auth, "a")["downstream_total"] == 2
    assert {x["key"] for x in job(client, auth, "a")["downstream"]} == {"b", "c"}
    listed = client.get("/api/v1/boards/wf/jobs?state=blocked", headers=auth).json["jobs"]
    assert listed == []


def test_the_classic_report_releases_downstream_jobs_too(app):
    b = lifecycle.create_board("classic-ish", [0, 5, 0])
    lifecycle.push_jobs(b.id, [NewJob("up", "null", 0), NewJob("down", "null", 0)],
                        {"down": Extras(after=("up",))})
    assert [j.key for j in lifecycle.claim(b.id, 0, 5)] == ["up"]
    lifecycle.update_job(b.id, "up", 2)  # the classic protocol's report
    assert [j.key for j in lifecycle.claim(b.id, 0, 5)] == ["down"]


def test_a_cycle_or_an_unknown_key_is_refused_and_nothing_is_written(client):
    auth = api_board(client)
    assert push(client, auth, [{"key": "x"}]).status_code == 200
    r = push(client, auth, [{"key": "a", "after": ["c"]}, {"key": "b", "after": ["a"]},
                            {"key": "c", "after": ["b"]}, {"key": "ok"}])
    assert r.status_code == 400
    assert "cycle" in r.json["message"] and all(k in r.json["message"] for k in "'a' 'b' 'c'".split())
    r = push(client, auth, [{"key": "a", "after": ["x", "nowhere", "gone"]}, {"key": "ok"}])
    assert r.status_code == 400
    assert "'gone', 'nowhere'" in r.json["message"] and "'x'" not in r.json["message"]
    r = push(client, auth, [{"key": "me", "after": ["me"]}])
    assert r.status_code == 400 and "'me'" in r.json["message"]
    s = status(client, auth)
    assert s["total"] == 1 and s["blocked"] == 0


def test_a_failed_upstream_keeps_downstream_blocked_and_retry_releases_it(client):
    auth = api_board(client, max_attempts=1)
    push(client, auth, DIAMOND)
    a = claim(client, auth)[0]
    r = client.post("/api/v1/boards/wf/fail", json={"attempt_id": a["attempt_id"],
                                                    "error": "boom"}, headers=auth)
    assert r.json["outcome"] == "failed"
    assert claim(client, auth) == []
    b = job(client, auth, "b")
    assert b["state"] == "blocked" and b["blocked_by"] == ["a"]
    assert b["after"] == [{"key": "a", "stage": 0, "state": "failed"}]
    r = client.post("/api/v1/boards/wf/retry", json={"state": "failed"}, headers=auth)
    assert r.json == {"retried": 1}
    a = job(client, auth, "a")
    assert (a["state"], a["stage"], a["attempts"], a["error"]) == ("waiting", 0, 0, None)
    advance(client, auth, claim(client, auth))  # now it works
    assert sorted(j["key"] for j in claim(client, auth)) == ["b", "c"]


def test_retry_by_key_puts_a_cancelled_running_job_back_where_it_waited(client):
    auth = api_board(client, lifetimes=[0, 5, 0, 5, 0])
    push(client, auth, [{"key": "k"}, {"key": "later", "after": ["k"]}])
    advance(client, auth, claim(client, auth))
    held = claim(client, auth, stage=2)[0]
    assert client.post("/api/v1/boards/wf/cancel", json={"keys": ["k", "later"]},
                       headers=auth).json == {"cancelled": 2}
    assert job(client, auth, "later")["state"] == "cancelled"
    r = client.post("/api/v1/boards/wf/retry", json={"keys": ["k", "later", "nope"]},
                    headers=auth)
    assert r.json == {"retried": 2}
    k = job(client, auth, "k")
    assert (k["state"], k["stage"]) == ("waiting", 2)
    assert job(client, auth, "later")["state"] == "blocked"  # k is not done yet
    # the worker that held k no longer does: its report changes nothing
    r = client.post("/api/v1/boards/wf/advance",
                    json={"attempts": [{"attempt_id": held["attempt_id"]}]}, headers=auth)
    assert r.status_code == 409
    advance(client, auth, claim(client, auth, stage=2))
    assert [j["key"] for j in claim(client, auth)] == ["later"]
    bad = client.post("/api/v1/boards/wf/retry", json={"state": "running"}, headers=auth)
    assert bad.status_code == 400
    assert client.post("/api/v1/boards/wf/retry", json={}, headers=auth).status_code == 400


def test_pushing_again_is_the_resume(client):
    auth = api_board(client)
    push(client, auth, [{"key": "a", "payload": {"x": 1}}, {"key": "b", "after": ["a"]}])
    advance(client, auth, claim(client, auth))
    r = push(client, auth, [{"key": "a", "payload": {"x": 1}}, {"key": "b", "after": ["a"]},
                            {"key": "c", "after": ["b"]}])
    assert r.json == {"created": 1, "existing": 2, "changed": 0, "changed_keys": []}
    assert job(client, auth, "a")["state"] == "done"  # done stays done
    # an edited workflow is noticed: a's payload, b's upstream jobs
    edited = [{"key": "a", "payload": {"x": 2}}, {"key": "b"}, {"key": "d", "after": ["a"]}]
    r = push(client, auth, edited, strict=True)
    assert r.status_code == 409 and r.json["details"]["changed_keys"] == ["a", "b"]
    assert status(client, auth)["total"] == 3  # nothing written
    r = push(client, auth, edited)
    assert r.json == {"created": 1, "existing": 2, "changed": 2, "changed_keys": ["a", "b"]}
    assert job(client, auth, "a")["payload"] == {"x": 1}  # left as it was
    assert job(client, auth, "d")["state"] == "waiting"  # its upstream job is done
    # the same payload spelled with its keys in another order is no change
    r = push(client, auth, [{"key": "e", "payload": {"p": 1, "q": 2}}])
    r = push(client, auth, [{"key": "e", "payload": {"q": 2, "p": 1}}], strict=True)
    assert r.status_code == 200 and r.json["changed"] == 0


def test_a_downstream_job_pushed_after_its_upstream_is_done_is_not_blocked(client):
    auth = api_board(client)
    push(client, auth, [{"key": "a"}])
    advance(client, auth, claim(client, auth))
    push(client, auth, [{"key": "b", "after": ["a"]}])
    assert job(client, auth, "b")["state"] == "waiting"


def test_a_big_push_in_chunks_keeps_its_order(app, monkeypatch):
    """Jobs pushed downstream-first across several chunks: each chunk's
    upstream jobs were written before it, and the chain runs in order."""
    from jobserver.lifecycle import jobs as lifecycle_jobs

    monkeypatch.setattr(lifecycle_jobs, "PUSH_CHUNK", 7)
    b = lifecycle.create_board("chain", [0, 5, 0])
    n = 30
    todo = [NewJob(f"j{i}", "null", 0) for i in reversed(range(n))]
    extras = {f"j{i}": Extras(after=(f"j{i - 1}",)) for i in range(1, n)}
    assert lifecycle.push_jobs(b.id, todo, extras).created == n
    order = []
    while got := lifecycle.claim(b.id, 0, 5, worker="w", lease=True):
        assert len(got) == 1
        order.append(got[0].key)
        lifecycle.advance(b.id, [Advance(got[0].attempt_id)])
    assert order == [f"j{i}" for i in range(n)]
    assert queries.board_status(b.id)["blocked"] == 0


# -------------------------------------------------------------- priorities

def test_claims_take_the_highest_priority_first_then_the_oldest(client):
    auth = api_board(client)
    push(client, auth, [{"key": "low", "priority": -5}, {"key": "old"}, {"key": "new"},
                        {"key": "urgent", "priority": 10}, {"key": "soon", "priority": 3}])
    r = client.post("/api/v1/boards/wf/priority", json={"keys": ["new", "gone"], "priority": 5},
                    headers=auth)
    assert r.json == {"changed": 1}
    assert [j["key"] for j in claim(client, auth, n=2)] == ["urgent", "new"]
    assert [j["key"] for j in claim(client, auth, n=10)] == ["soon", "old", "low"]
    # a running job keeps its priority
    r = client.post("/api/v1/boards/wf/priority", json={"keys": ["low"], "priority": 99},
                    headers=auth)
    assert r.json == {"changed": 0}
    assert job(client, auth, "urgent")["priority"] == 10


def test_the_claim_is_one_indexed_statement_at_a_million_jobs(app):
    """The plan of the claim on a board of 1,000,000 jobs: one walk down
    the claim index gives the order (no sort of the stage's jobs)."""
    from jobserver.lifecycle import jobs as lifecycle_jobs

    b = lifecycle.create_board("big", [0, 5, 0])
    sqlite = db.engine.dialect.name == "sqlite"
    numbers = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
               "WHERE i < 1000000) SELECT i FROM n" if sqlite
               else "SELECT i FROM generate_series(1, 1000000) AS i")
    with db.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO jobs (board_id, key, payload, stage, entered_at, flagged, attempts, "
            f"state, priority, waiting_on) SELECT {b.id}, 'k' || i, 'null', 0, i, false, 0, "
            f"'active', mod(i, 3), 0 FROM ({numbers}) AS n")
    sweep = importlib.import_module("jobserver.lifecycle.sweep")
    with db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()

        def plan(stmt, **values):
            compiled = stmt.compile(dialect=db.engine.dialect)
            params = compiled.construct_params(values)
            if sqlite:
                return " / ".join(r[3] for r in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + compiled.string,
                    tuple(params[k] for k in compiled.positiontup)))
            return "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + compiled.string,
                                                                params))

        claim = plan(lifecycle_jobs._CLAIM.statement, b=b.id, from_stage=0, n=10, to_stage=1,
                     top=1, now=0.0, hb=None)
        # the sweep: the stage's priorities, one seek each, then a range of each
        priorities = plan(sweep._LOWER_PRIORITY, b=b.id, s=0, p=2)
        flag = plan(sweep._FLAG_OVERDUE, b=b.id, s=0, p=1, cut=50.0)
        if sqlite:
            assert "INDEX ix_jobs_claim (board_id=? AND stage=? AND state=?)" in claim, claim
            assert "TEMP B-TREE" not in claim and "SCAN jobs" not in claim, claim
            assert "ix_jobs_claim (board_id=? AND stage=? AND state=? AND priority<?)" \
                in priorities, priorities
            assert "ix_jobs_claim (board_id=? AND stage=? AND state=? AND priority=? AND " \
                "entered_at<?)" in flag, flag
        else:
            assert "Index Scan using ix_jobs_claim on jobs" in claim, claim
            assert "Sort" not in claim and "Seq Scan on jobs" not in claim, claim
            for p in (priorities, flag):
                assert "ix_jobs_claim on jobs" in p and "Seq Scan on jobs" not in p, p
            assert "Index Cond: ((board_id = " in flag and "(priority = " in flag \
                and "(entered_at < " in flag, flag
    with db.engine.connect() as conn:
        assert list(sweep._priorities(conn, b.id, 0)) == [2, 1, 0]
    got = lifecycle.claim(b.id, 0, 3)
    assert [j.key for j in got] == ["k2", "k5", "k8"]  # priority 2, oldest first


# ------------------------------------------------------ per-job attempts

def test_a_job_s_own_max_attempts_overrides_the_board_s(client):
    auth = api_board(client, max_attempts=5)
    push(client, auth, [{"key": "fragile", "max_attempts": 1}, {"key": "normal"}])
    for j in claim(client, auth, n=2):
        r = client.post("/api/v1/boards/wf/fail", json={"attempt_id": j["attempt_id"]},
                        headers=auth)
        assert r.json["outcome"] == ("failed" if j["key"] == "fragile" else "requeued")
    assert job(client, auth, "fragile")["max_attempts"] == 1


# ------------------------------------------------------------- the cap

def test_patch_changes_the_cap_and_max_attempts(client):
    auth = api_board(client)
    r = client.patch("/api/v1/boards/wf", json={"max_running": 2, "max_attempts": 7},
                     headers=auth)
    assert r.status_code == 200 and (r.json["max_running"], r.json["max_attempts"]) == (2, 7)
    push(client, auth, [{"key": f"j{i}"} for i in range(5)])
    got = claim(client, auth)
    assert len(got) == 2 and claim(client, auth) == []
    advance(client, auth, got[:1])  # a slot frees: handed out at once
    assert len(claim(client, auth)) == 1
    r = client.patch("/api/v1/boards/wf", json={"max_running": None}, headers=auth)
    assert r.json["max_running"] is None and r.json["max_attempts"] == 7
    assert len(claim(client, auth)) == 2
    assert client.patch("/api/v1/boards/wf", json={"max_running": -1},
                        headers=auth).status_code == 400


def test_the_cap_holds_with_16_concurrent_claimers(app):
    b = lifecycle.create_board("capped", [0, 5, 0], max_running=3)
    lifecycle.push(b.id, [NewJob(f"j{i}", "null", 0) for i in range(200)])
    peak = [0]
    done = [0]
    lock = threading.Lock()
    errors = []

    def worker(w):
        try:
            with app.app_context():
                while True:
                    got = lifecycle.claim(b.id, 0, 2, worker=f"w{w}", lease=True)
                    if got:
                        with db.engine.connect() as conn:  # the jobs, not the counters
                            running = conn.exec_driver_sql(
                                "SELECT count(*) FROM jobs WHERE stage = 1 AND "
                                "state = 'active'").scalar()
                        with lock:
                            peak[0] = max(peak[0], running)
                        lifecycle.advance(b.id, [Advance(j.attempt_id) for j in got])
                        with lock:
                            done[0] += len(got)
                    elif queries.board_status(b.id)["counts"].get("0", 0) == 0:
                        return
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert done[0] == 200 and 0 < peak[0] <= 3


# ------------------------------------------------------------- notes

def test_notes_from_a_running_job_are_kept_as_its_events(client):
    auth = api_board(client)
    push(client, auth, [{"key": "n"}])
    a = claim(client, auth)[0]["attempt_id"]
    notes = {str(a): [{"kind": "event", "name": "phase", "message": "meshing"},
                      {"kind": "log", "message": "step 3 of 10"},
                      {"kind": "var", "name": "energy", "value": "-1.5"}],
             "999999": [{"kind": "log", "message": "not mine"}]}
    r = client.post("/api/v1/boards/wf/heartbeat", json={"worker": "w1", "notes": notes},
                    headers=auth)
    assert r.status_code == 200
    other = client.post("/api/v1/boards/wf/heartbeat",
                        json={"worker": "w2", "notes": {str(a): [{"kind": "log",
                                                                   "message": "intruder"}]}},
                        headers=auth)
    assert other.status_code == 200
    events = [(e["kind"], e["detail"]) for e in job(client, auth, "n")["events"]
              if e["kind"] in ("event", "log", "var")]
    assert events == [("event", {"name": "phase", "message": "meshing"}),
                      ("log", {"message": "step 3 of 10"}),
                      ("var", {"name": "energy", "value": "-1.5"})]
    bad = client.post("/api/v1/boards/wf/heartbeat",
                      json={"worker": "w1", "notes": {str(a): [{"kind": "shout"}]}},
                      headers=auth)
    assert bad.status_code == 400


# ------------------------------------------------------------ migration

def test_a_database_of_the_previous_release_upgrades_with_its_jobs(tmp_path):
    path = tmp_path / "old.sqlite"
    old = sqlite_at_revision(path, "0004")
    old.executescript("""
        INSERT INTO boards (id, name, created_at, auto_requeue, max_attempts)
            VALUES (1, 'b', 0, 1, 3);
        INSERT INTO stages (board_id, number, lifetime) VALUES (1, 0, 0), (1, 1, 5), (1, 2, 0);
        INSERT INTO jobs (id, board_id, key, payload, stage, entered_at, flagged, attempts, state)
            VALUES (1, 1, 'a', 'null', 0, 2, 0, 0, 'active'),
                   (2, 1, 'b', 'null', 0, 1, 0, 0, 'active');
        INSERT INTO stage_counts VALUES (1, 0, 'active', 2);
    """)
    old.commit()
    old.close()
    app = create_app({"DATABASE_URL": f"sqlite:///{path}", "SWEEP_MODE": "off"})  # migrates
    with app.app_context():
        assert queries.job_detail(1, "a")["priority"] == 0
        assert lifecycle.board_settings(1)["max_running"] is None
        lifecycle.set_priority(1, ["a"], 1)
        assert [j.key for j in lifecycle.claim(1, 0, 1)] == ["a"]  # priority over age
        lifecycle.push_jobs(1, [NewJob("c", "null", 0)], {"c": Extras(after=("b",))})
        assert queries.job_detail(1, "c")["state"] == "blocked"
        close_writer(db.engine)
        db.engine.dispose()


@pytest.mark.parametrize("body", [
    [{"key": "x", "after": ["y"]}],  # unknown
    [{"key": "x", "priority": "high"}],
])
def test_bad_workflow_pushes_are_400s(client, body):
    auth = api_board(client)
    r = push(client, auth, body)
    assert r.status_code == 400 and r.json["message"]


def test_an_aggregate_after_thousands_of_jobs_shows_the_first_hundred(client):
    auth = api_board(client)
    sims = [{"key": f"sim{i}"} for i in range(1500)]
    r = push(client, auth, sims + [{"key": "aggregate", "after": [s["key"] for s in sims]}])
    assert r.status_code == 200 and r.json["created"] == 1501
    agg = job(client, auth, "aggregate")
    assert agg["state"] == "blocked" and agg["after_total"] == 1500
    assert len(agg["after"]) == len(agg["blocked_by"]) == 100
    page = client.get("/boards/wf/jobs/aggregate", headers=auth)
    assert page.status_code == 200 and "and 1400 more" in page.get_data(as_text=True)
    r = push(client, auth, [{"key": "x", "after": "sim1"}])
    assert r.status_code == 400 and "job 1 ('x')" in r.json["message"]


def test_deleting_a_board_takes_its_dependencies_along(client):
    auth = api_board(client)
    push(client, auth, DIAMOND)
    r = client.delete("/api/v1/boards/wf", headers=auth)
    assert r.status_code == 200 and r.json["deleted_jobs"] == 4
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM dependencies").scalar() == 0


def test_overlapping_pushes_of_one_workflow_both_land(app, monkeypatch):
    """A push whose keys another push writes between its plan and its
    write (a client that retried a slow push, two masters) leaves those as
    written and links its own jobs to them."""
    from jobserver.lifecycle import jobs as lifecycle_jobs

    b = lifecycle.create_board("twice", [0, 5, 0])
    planned = lifecycle_jobs._plan

    def plan_then_another_push(*args, **kwargs):
        plan = planned(*args, **kwargs)
        monkeypatch.setattr(lifecycle_jobs, "_plan", planned)
        lifecycle.push_jobs(b.id, [NewJob("a", "null", 0), NewJob("c", "null", 0)],
                            {"c": Extras(after=("a",))})
        return plan

    monkeypatch.setattr(lifecycle_jobs, "_plan", plan_then_another_push)
    r = lifecycle.push_jobs(b.id, [NewJob("a", "null", 0), NewJob("b", "null", 0)],
                            {"b": Extras(after=("a",))})
    assert (r.created, r.existing) == (1, 1)
    got = lifecycle.claim(b.id, 0, 5, worker="w", lease=True)
    assert [j.key for j in got] == ["a"]
    lifecycle.advance(b.id, [Advance(got[0].attempt_id)])
    assert sorted(j.key for j in lifecycle.claim(b.id, 0, 5)) == ["b", "c"]
    assert queries.board_status(b.id)["counts"] == {"1": 2, "2": 1}


def test_concurrent_retries_of_one_job_count_it_once(app):
    b = lifecycle.create_board("re", [0, 5, 0], max_attempts=1)
    lifecycle.push(b.id, [NewJob("x", "null", 0)])
    (j,) = lifecycle.claim(b.id, 0, 1, worker="w", lease=True)
    lifecycle.fail(b.id, j.attempt_id, "boom")
    results = []
    threads = [threading.Thread(target=lambda: results.append(_retry_in(app, b.id)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 0, 0, 1]
    status = queries.board_status(b.id)
    assert status["counts"] == {"0": 1} and status["failed"] == 0


def _retry_in(app, board_id):
    with app.app_context():
        return lifecycle.retry(board_id, keys=["x"])


def test_a_claim_that_jumps_to_the_last_stage_releases_downstream_jobs(app):
    b = lifecycle.create_board("jump", [0, 5, 0])
    lifecycle.push_jobs(b.id, [NewJob("a", "null", 0), NewJob("b", "null", 0)],
                        {"b": Extras(after=("a",))})
    assert [j.key for j in lifecycle.claim(b.id, 0, 5, to_stage=2)] == ["a"]
    assert [j.key for j in lifecycle.claim(b.id, 0, 5)] == ["b"]


def test_the_classic_report_does_not_unblock_a_blocked_job(app):
    b = lifecycle.create_board("hands", [0, 5, 0])
    lifecycle.push_jobs(b.id, [NewJob("a", "null", 0), NewJob("b", "null", 0)],
                        {"b": Extras(after=("a",))})
    lifecycle.update_job(b.id, "b", 0)  # by hand, while a is not done
    assert [j.key for j in lifecycle.claim(b.id, 0, 5)] == ["a"]
    assert queries.board_status(b.id)["blocked"] == 1


def test_a_chatty_job_keeps_at_most_its_share_of_notes(client, monkeypatch):
    from jobserver.lifecycle import attempts as lifecycle_attempts

    monkeypatch.setattr(lifecycle_attempts, "MAX_NOTES_PER_ATTEMPT", 25)
    auth = api_board(client)
    push(client, auth, [{"key": "chatty"}])
    a = claim(client, auth)[0]["attempt_id"]
    for beat in range(3):
        notes = [{"kind": "log", "message": f"{beat}-{i}"} for i in range(10)]
        r = client.post("/api/v1/boards/wf/heartbeat", headers=auth,
                        json={"worker": "w1", "notes": {str(a): notes}})
        assert r.status_code == 200
    kept = [e["detail"]["message"] for e in job(client, auth, "chatty")["events"]
            if e["kind"] == "log"]
    assert len(kept) == 25 and kept[:20] == [f"{b}-{i}" for b in (0, 1) for i in range(10)]
    assert kept[-1].startswith("more notes dropped")


def test_the_sweep_finds_overstaying_jobs_of_any_number_of_priorities(app):
    b = lifecycle.create_board("prio", [0, 1, 0])
    n = 100  # more distinct priorities than the sweep walks one by one
    lifecycle.push_jobs(b.id, [NewJob(f"j{i}", "null", 0) for i in range(n)],
                        {f"j{i}": Extras(priority=-i) for i in range(n)})
    assert len(lifecycle.claim(b.id, 0, n, worker="w", lease=True)) == n
    assert len(lifecycle.claim(b.id, 0, 1)) == 0
    swept = lifecycle.sweep(b.id, now=time.time() + 120)
    assert (swept.flagged, swept.requeued) == (n, n)
    few = lifecycle.create_board("few", [0, 1, 0])
    lifecycle.push_jobs(few.id, [NewJob(f"j{i}", "null", 0) for i in range(6)],
                        {f"j{i}": Extras(priority=i % 3) for i in range(6)})
    lifecycle.claim(few.id, 0, 6, worker="w", lease=True)
    assert lifecycle.sweep(few.id, now=time.time() + 120).requeued == 6


def test_more_bad_workflow_input(client):
    auth = api_board(client)
    # a key pushed twice is the first one's, extras included
    r = push(client, auth, [{"key": "u"}, {"key": "x", "payload": 1},
                            {"key": "x", "payload": 2, "after": ["u"], "priority": 9}])
    assert r.json["created"] == 2
    x = job(client, auth, "x")
    assert (x["payload"], x["after"], x["priority"], x["state"]) == (1, [], 0, "waiting")
    r = push(client, auth, [{"key": "odd", "stage": 1, "after": ["u"]}])
    assert r.status_code == 400 and "'odd'" in r.json["message"]
    r = client.post("/api/v1/boards/wf/retry", json={"keys": ["x"], "state": "failed"},
                    headers=auth)
    assert r.json == {"retried": 0}  # x is not failed
    r = push(client, auth, [{"key": "nul", "priority": None}])
    assert r.status_code == 400 and "'priority'" in r.json["message"]
