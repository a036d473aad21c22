"""Pools (issue 10), server side, on SQLite and PostgreSQL: workers and
attempts know their allocation, pools report their allocations, the
resource log keeps samples over time."""
from __future__ import annotations

import time

from jobserver import create_app, lifecycle, pools, queries
from jobserver.dialect import close_writer
from jobserver.extensions import db
from tests.conftest import ADMIN, sqlite_at_revision


def api_board(client, name="hpc", **spec):
    r = client.post("/api/v1/boards", headers=ADMIN, json={"name": name, **spec})
    assert r.status_code == 201, r.json
    return {"Authorization": f"Bearer {r.json['token']}"}


def put_allocation(client, auth, alloc, **body):
    return client.put(f"/api/v1/boards/hpc/allocations/{alloc}", json=body, headers=auth)


def test_attempts_workers_and_samples_carry_the_allocation(client):
    auth = api_board(client)
    client.post("/api/v1/boards/hpc/jobs", json=[{"key": "sim"}], headers=auth)
    got = client.post("/api/v1/boards/hpc/claim",
                      json={"stage": 0, "worker": "node1-w0", "allocation": "4242"},
                      headers=auth).json["jobs"]
    a = got[0]["attempt_id"]
    for cpu, rss in ((95.5, 1_000_000), (180.0, 2_500_000)):
        r = client.post("/api/v1/boards/hpc/heartbeat", headers=auth, json={
            # the second says nothing of its allocation: the attempt's is kept
            "worker": "node1-w0", "allocation": "4242" if cpu < 100 else None, "running": [a],
            "samples": {str(a): {"host": "node1", "pid": 7, "cpu_percent": cpu,
                                 "rss_bytes": rss, "runtime_s": 1.5}}})
        assert r.status_code == 200
    # another worker cannot write into this attempt's log
    client.post("/api/v1/boards/hpc/heartbeat", headers=auth, json={
        "worker": "intruder", "samples": {str(a): {"cpu_percent": 1.0}}})
    workers = client.get("/api/v1/boards/hpc/workers", headers=auth).json["workers"]
    assert [(w["name"], w["allocation"]) for w in workers] == [("intruder", None),
                                                              ("node1-w0", "4242")]
    job = client.get("/api/v1/boards/hpc/jobs/sim", headers=auth).json
    assert job["attempts_history"][0]["allocation"] == "4242"
    samples = client.get("/api/v1/boards/hpc/jobs/sim/resources", headers=auth).json["samples"]
    assert [(s["host"], s["allocation"], s["cpu_percent"], s["rss_bytes"]) for s in samples] == [
        ("node1", "4242", 95.5, 1_000_000), ("node1", "4242", 180.0, 2_500_000)]
    assert samples[0]["attempt_id"] == a and samples[0]["stage"] == 0
    assert client.get("/api/v1/boards/hpc/jobs/nope/resources",
                      headers=auth).status_code == 404
    bad = client.post("/api/v1/boards/hpc/claim", headers=auth,
                      json={"stage": 0, "worker": "w", "allocation": "no spaces"})
    assert bad.status_code == 400 and "allocation" in bad.json["message"]


def test_a_pool_reports_its_allocations(client):
    auth = api_board(client)
    r = put_allocation(client, auth, "101", pool="p", scheduler="slurm", state="pending",
                       reason="Priority", nodes=1, workers_per_node=2, time_limit_s=600)
    assert r.status_code == 200, r.json
    assert (r.json["state"], r.json["reason"], r.json["started_at"]) == ("pending", "Priority",
                                                                         None)
    r = put_allocation(client, auth, "101", state="running", reason=None)
    assert r.json["state"] == "running" and r.json["started_at"] is not None
    assert r.json["workers_per_node"] == 2  # kept from the first report
    started = r.json["started_at"]
    r = put_allocation(client, auth, "101", state="ended", reason="TIMEOUT")
    assert (r.json["state"], r.json["reason"]) == ("ended", "TIMEOUT")
    assert r.json["started_at"] == started and r.json["ended_at"] >= started
    r = put_allocation(client, auth, "101", state="running")  # a late report changes nothing
    assert r.json["state"] == "ended"
    put_allocation(client, auth, "102", pool="p", scheduler="slurm", state="pending")
    listed = client.get("/api/v1/boards/hpc/allocations", headers=auth).json["allocations"]
    assert [a["id"] for a in listed] == ["102", "101"]
    assert put_allocation(client, auth, "103", state="lost").status_code == 400
    assert put_allocation(client, auth, "bad id", state="pending").status_code in (400, 404)
    assert put_allocation(client, auth, "104", state="pending",
                          scheduler="pbs").status_code == 400


def test_a_killed_allocation_shows_its_lost_jobs(client):
    """scancel'ed at its time limit: the worker falls silent, the sweep
    requeues its job; the allocation's row counts the lost attempt."""
    auth = api_board(client, lifetimes=[0, 1, 0])
    board = lifecycle.board_by_name("hpc")
    client.post("/api/v1/boards/hpc/jobs", json=[{"key": "j"}], headers=auth)
    put_allocation(client, auth, "77", pool="p", scheduler="slurm", state="running")
    client.post("/api/v1/boards/hpc/claim", headers=auth,
                json={"stage": 0, "worker": "w77", "allocation": "77"})
    listed = client.get("/api/v1/boards/hpc/allocations", headers=auth).json["allocations"]
    assert (listed[0]["workers"], listed[0]["running"]) == (1, 1)
    assert lifecycle.sweep(board.id, now=time.time() + 120).requeued == 1
    put_allocation(client, auth, "77", state="ended", reason="CANCELLED")
    a = client.get("/api/v1/boards/hpc/allocations", headers=auth).json["allocations"][0]
    assert (a["state"], a["running"], a["lost_attempts"]) == ("ended", 0, 1)
    job = client.get("/api/v1/boards/hpc/jobs/j", headers=auth).json
    assert job["state"] == "waiting"
    assert [(h["outcome"], h["allocation"]) for h in job["attempts_history"]] == [("lost", "77")]


def test_deleting_a_board_takes_its_allocations_and_samples(client):
    auth = api_board(client)
    client.post("/api/v1/boards/hpc/jobs", json=[{"key": "x"}], headers=auth)
    a = client.post("/api/v1/boards/hpc/claim", headers=auth,
                    json={"stage": 0, "worker": "w"}).json["jobs"][0]["attempt_id"]
    client.post("/api/v1/boards/hpc/heartbeat", headers=auth,
                json={"worker": "w", "samples": {str(a): {"cpu_percent": 5}}})
    put_allocation(client, auth, "1", state="pending")
    assert client.delete("/api/v1/boards/hpc", headers=auth).status_code == 200
    with db.engine.connect() as conn:
        for table in ("samples", "allocations", "attempts"):
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() == 0


def test_a_database_of_the_previous_release_upgrades(tmp_path):
    path = tmp_path / "old.sqlite"
    old = sqlite_at_revision(path, "0005")
    old.executescript("""
        INSERT INTO boards (id, name, created_at, auto_requeue, max_attempts)
            VALUES (1, 'b', 0, 1, 3);
        INSERT INTO jobs (id, board_id, key, payload, stage, entered_at, flagged, attempts, state)
            VALUES (1, 1, 'a', 'null', 1, 0, 0, 1, 'active');
        INSERT INTO attempts (id, job_id, board_id, stage, worker, started_at, outcome)
            VALUES (1, 1, 1, 0, 'w', 0, 'running');
        INSERT INTO workers (board_id, name, first_seen, last_seen, state)
            VALUES (1, 'w', 0, 0, 'alive');
    """)
    old.commit()
    old.close()
    app = create_app({"DATABASE_URL": f"sqlite:///{path}", "SWEEP_MODE": "off"})  # migrates
    with app.app_context():
        assert queries.job_detail(1, "a")["attempts_history"][0]["allocation"] is None
        lifecycle.heartbeat(1, "w", running=[1], samples={1: {"cpu_percent": 3.0}},
                            allocation="9")
        assert queries.list_workers(1)[0]["allocation"] == "9"
        assert [s["cpu_percent"] for s in pools.job_resources(1, "a")] == [3.0]
        close_writer(db.engine)
        db.engine.dispose()
