"""Long-poll claims (``wait``): held while the board is empty, woken by work."""
from __future__ import annotations

import threading
import time

import pytest

from jobserver import create_app, wakeup
from jobserver.dialect import close_writer
from jobserver.extensions import db
from tests.conftest import ADMIN, ADMIN_TOKEN

CLAIM = "/api/v1/boards/sims/claim"


@pytest.fixture
def waking(app):
    yield app
    wakeup.stop(app)


@pytest.fixture
def board(waking):
    client = waking.test_client()
    r = client.post("/api/v1/boards", headers=ADMIN, json={"name": "sims", "lifetimes": [0, 1, 0]})
    assert r.status_code == 201
    return {"Authorization": f"Bearer {r.json['token']}"}


def _claim(client, auth, wait, stage=0):
    return client.post(CLAIM, headers=auth, json={"stage": stage, "worker": "w", "wait": wait})


def _later(delay, action):
    """Run ``action`` in another thread after ``delay`` s; returns a dict that
    gets the moment the action was done ("done")."""
    out: dict = {}

    def run():
        time.sleep(delay)
        out["started"] = time.monotonic()
        action()
        out["done"] = time.monotonic()

    t = threading.Thread(target=run)
    t.start()
    out["thread"] = t
    return out


def test_a_push_wakes_a_waiting_claim(waking, board):
    client = waking.test_client()

    def push():
        with waking.app_context():
            r = waking.test_client().post("/api/v1/boards/sims/jobs", headers=board,
                                          json=[{"key": "a", "payload": 1}])
            assert r.status_code == 200

    t0 = time.monotonic()
    pushed = _later(0.5, push)
    r = _claim(client, board, 2)
    answered = time.monotonic()
    pushed["thread"].join()
    assert r.status_code == 200
    assert [j["key"] for j in r.json["jobs"]] == ["a"]
    assert answered - t0 >= 0.45  # it did wait
    # within 100 ms of the push's commit (the push answers just after it)
    assert answered - pushed["done"] < 0.1, (answered - pushed["started"],
                                             answered - pushed["done"])


def test_a_claim_finding_jobs_answers_at_once(waking, board):
    client = waking.test_client()
    client.post("/api/v1/boards/sims/jobs", headers=board, json=[{"key": "a", "payload": 1}])
    t0 = time.monotonic()
    r = _claim(client, board, 30)
    assert [j["key"] for j in r.json["jobs"]] == ["a"]
    assert time.monotonic() - t0 < 1


def test_the_wait_ends_empty(waking, board):
    client = waking.test_client()
    t0 = time.monotonic()
    r = _claim(client, board, 0.5)
    took = time.monotonic() - t0
    assert r.status_code == 200 and r.json == {"jobs": []}
    assert 0.45 <= took < 1.5
    assert wakeup._waker().waiting() == 0  # nothing left behind


def test_a_release_and_a_retry_wake_waiting_claims(waking, board):
    client = waking.test_client()
    client.post("/api/v1/boards/sims/jobs", headers=board, json=[{"key": "a", "payload": 1}])
    job = _claim(client, board, 0).json["jobs"][0]

    def release():
        with waking.app_context():
            waking.test_client().post("/api/v1/boards/sims/release", headers=board,
                                      json={"attempt_ids": [job["attempt_id"]]})

    done = _later(0.3, release)
    r = _claim(client, board, 5)
    answered = time.monotonic()
    done["thread"].join()
    assert [j["key"] for j in r.json["jobs"]] == ["a"]
    assert answered - done["done"] < 0.1

    # fail it for good (max_attempts 1 on this board? no: fail twice), then retry
    job = r.json["jobs"][0]
    client.patch("/api/v1/boards/sims", headers=board, json={"max_attempts": 1})
    assert client.post("/api/v1/boards/sims/fail", headers=board,
                       json={"attempt_id": job["attempt_id"], "error": "x"}).json["outcome"] \
        == "failed"

    def retry():
        with waking.app_context():
            waking.test_client().post("/api/v1/boards/sims/retry", headers=board,
                                      json={"state": "failed"})

    done = _later(0.3, retry)
    r = _claim(client, board, 5)
    answered = time.monotonic()
    done["thread"].join()
    assert [j["key"] for j in r.json["jobs"]] == ["a"]
    assert answered - done["done"] < 0.1


@pytest.mark.parametrize("wait", [-1, 61, "5", None, True, [1], 1e9])
def test_bad_wait_values_are_refused(waking, board, wait):
    client = waking.test_client()
    r = _claim(client, board, wait)
    assert r.status_code == 400
    assert "wait" in r.json["message"]


def test_fractional_and_zero_waits_are_fine(waking, board):
    client = waking.test_client()
    assert _claim(client, board, 0).json == {"jobs": []}
    assert _claim(client, board, 0.05).json == {"jobs": []}


def test_the_description_documents_wait(waking):
    doc = waking.test_client().get("/api/v1/openapi.json").json
    body = doc["paths"]["/boards/{name}/claim"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert body["properties"]["wait"]["maximum"] == 60
    assert "wakes" in body["properties"]["wait"]["description"]


def test_a_push_through_another_process_wakes_the_claim(postgres_app, tmp_path):
    """Two apps on one PostgreSQL database stand for two server processes:
    the push through B reaches A's waiting claim by NOTIFY."""
    app = postgres_app
    client = app.test_client()
    r = client.post("/api/v1/boards", headers=ADMIN, json={"name": "sims"})
    auth = {"Authorization": f"Bearer {r.json['token']}"}
    other = create_app({"DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
                        "SWEEP_MODE": "off", "TESTING": True, "ADMIN_TOKEN": ADMIN_TOKEN})
    try:
        def push():
            with other.app_context():
                assert other.test_client().post("/api/v1/boards/sims/jobs", headers=auth, json=[
                    {"key": "a", "payload": 1}]).status_code == 200
                # B has no waiter: only the NOTIFY can wake A
                assert wakeup._waker().waiting() == 0

        pushed = _later(0.5, push)
        r = _claim(client, auth, 3)
        answered = time.monotonic()
        pushed["thread"].join()
        assert [j["key"] for j in r.json["jobs"]] == ["a"]
        assert answered - pushed["done"] < 0.1
    finally:
        wakeup.stop(app)
        wakeup.stop(other)
        with other.app_context():
            other.extensions["jobserver_live"].stop()
            close_writer(db.engine)
            db.engine.dispose()


def test_a_big_push_reaches_every_waiter(waking, board):
    """One arrival wakes a few claims, and each that finds a job wakes the
    next few: ten waiters get ten jobs at once, not at the next re-check."""
    answers: list = []

    def hold(i):
        with waking.app_context():
            r = waking.test_client().post(CLAIM, headers=board,
                                          json={"stage": 0, "worker": f"w{i}", "wait": 4})
            answers.append((time.monotonic(), r.json["jobs"]))

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while wakeup._waker().waiting() < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    client = waking.test_client()
    client.post("/api/v1/boards/sims/jobs", headers=board,
                json=[{"key": f"k{i}", "payload": i} for i in range(10)])
    pushed = time.monotonic()
    for t in threads:
        t.join()
    assert sorted(j["key"] for _, jobs in answers for j in jobs) == sorted(
        f"k{i}" for i in range(10))
    assert max(t for t, _ in answers) - pushed < 1.0


def test_the_server_holds_claims_no_longer_than_its_setting(app):
    app.config["CLAIM_WAIT_MAX"] = 0.3
    client = app.test_client()
    r = client.post("/api/v1/boards", headers=ADMIN, json={"name": "short"})
    auth = {"Authorization": f"Bearer {r.json['token']}"}
    t0 = time.monotonic()
    r = client.post("/api/v1/boards/short/claim", headers=auth,
                    json={"stage": 0, "worker": "w", "wait": 30})
    assert r.status_code == 200 and r.json["jobs"] == []
    assert time.monotonic() - t0 < 3
