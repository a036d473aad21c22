"""Live logs in-process (SQLite and PostgreSQL): chunks kept per attempt
from heartbeats, read as text, bounded per attempt and per board, gone with
their board."""
from __future__ import annotations

from sqlalchemy import func, select

from jobserver.extensions import db
from jobserver.models import Job
from jobserver.lifecycle.logs import ATTEMPT_LOGS, BOARD_LOGS, CHUNKS
from tests.conftest import ADMIN

DROPPED = "[jobserver: {:,} earlier bytes of this log were dropped]\n"


def make_board(client, name="logs"):
    r = client.post("/api/v1/boards", headers=ADMIN, json={"name": name, "lifetimes": [0, 1, 0]})
    assert r.status_code == 201, r.json
    return {"Authorization": f"Bearer {r.json['token']}"}


def claim(client, auth, keys, board="logs", worker="w1"):
    client.post(f"/api/v1/boards/{board}/jobs", json=[{"key": k} for k in keys], headers=auth)
    r = client.post(f"/api/v1/boards/{board}/claim",
                    json={"stage": 0, "n": len(keys), "worker": worker}, headers=auth)
    assert r.status_code == 200, r.json
    return {j["key"]: j["attempt_id"] for j in r.json["jobs"]}


class Beats:
    """What a worker sends: each stream's output since the last beat, with
    its offset in the stream."""

    def __init__(self, client, auth, board="logs", worker="w1"):
        self.client, self.auth, self.board, self.worker = client, auth, board, worker
        self.ends: dict[tuple[int, str], int] = {}

    def send(self, attempt: int, out: str = "", err: str = "", offsets=None):
        chunks = []
        for stream, text in (("out", out), ("err", err)):
            if text:
                at = self.ends.get((attempt, stream), 0)
                if offsets and stream in offsets:
                    at = offsets[stream]
                chunks.append({"stream": stream, "offset": at, "text": text})
                self.ends[(attempt, stream)] = at + len(text.encode())
        r = self.client.post(f"/api/v1/boards/{self.board}/heartbeat", headers=self.auth,
                             json={"worker": self.worker, "running": [attempt],
                                   "chunks": {str(attempt): chunks}})
        assert r.status_code == 200, r.json
        return r


def read(client, auth, key, board="logs", **params):
    r = client.get(f"/api/v1/boards/{board}/logs/{key}", headers=auth, query_string=params)
    return r


def test_chunks_of_a_running_job_read_as_text_per_stream(client):
    auth = make_board(client)
    a = claim(client, auth, ["sim/1"])["sim/1"]
    beats = Beats(client, auth)
    beats.send(a, out="step 1\n", err="warning: slow\n")
    beats.send(a, out="step 2\n")
    r = read(client, auth, "sim/1")  # a key with '/': the route is /logs/<key>
    assert r.status_code == 200 and r.mimetype == "text/plain"
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.text == "step 1\nwarning: slow\nstep 2\n"
    assert r.headers["X-Jobserver-Attempt"] == "1"
    assert r.headers["X-Jobserver-Attempt-Running"] == "true"
    assert read(client, auth, "sim/1", stream="out").text == "step 1\nstep 2\n"
    assert read(client, auth, "sim/1", stream="err").text == "warning: slow\n"
    # a reader reads on from its cursor
    cursor = r.headers["X-Jobserver-Log-Cursor"]
    assert read(client, auth, "sim/1", after=cursor).text == ""
    beats.send(a, out="step 3\n")
    assert read(client, auth, "sim/1", after=cursor).text == "step 3\n"
    # the old tails keep working beside the chunks
    client.post("/api/v1/boards/logs/heartbeat", headers=auth,
                json={"worker": "w1", "running": [a], "logs": {str(a): "the tail"}})
    assert client.get("/api/v1/boards/logs/jobs/sim/1", headers=auth).json["log_tail"] == \
        "the tail"


def test_a_retried_heartbeat_does_not_repeat_output_and_a_gap_is_marked(client):
    auth = make_board(client)
    a = claim(client, auth, ["k"])["k"]
    beats = Beats(client, auth)
    beats.send(a, out="one\n")
    beats.send(a, out="one\ntwo\n", offsets={"out": 0})  # the same beat again, and more
    beats.send(a, out="five\n", offsets={"out": 100})  # the worker dropped 92 bytes
    assert read(client, auth, "k").text == "one\ntwo\n" + DROPPED.format(92) + "five\n"


def test_unknown_job_attempt_and_bad_parameters_answer_json(client):
    auth = make_board(client)
    claim(client, auth, ["k"])
    client.post("/api/v1/boards/logs/jobs", json=[{"key": "waits"}], headers=auth)
    for params, key, code, words in [
            ({}, "nope", 404, "no job 'nope'"),
            ({}, "waits", 404, "has not run yet"),
            ({"attempt": 2}, "k", 404, "has 1 attempt, not 2"),
            ({"attempt": 0}, "k", 400, "attempt"),
            ({"stream": "all"}, "k", 400, "stream"),
            ({"after": "x"}, "k", 400, "after")]:
        r = read(client, auth, key, **params)
        assert r.status_code == code, (params, r.json)
        assert r.json["error"] and words in r.json["message"]
    assert client.get("/api/v1/boards/logs/logs/k").status_code == 401


def test_a_heartbeat_for_another_workers_attempt_keeps_nothing(client):
    auth = make_board(client)
    a = claim(client, auth, ["k"])["k"]
    Beats(client, auth, worker="intruder").send(a, out="not mine\n")
    assert read(client, auth, "k").text == ""


def test_the_per_attempt_bound_drops_the_oldest_with_a_marker(app, client):
    app.config["LOG_MAX_PER_JOB"] = 100
    auth = make_board(client)
    a = claim(client, auth, ["k"])["k"]
    beats = Beats(client, auth)
    for i in range(10):
        beats.send(a, out=f"line {i:02d} " + "x" * 21 + "\n")  # 30 bytes each
    text = read(client, auth, "k").text
    line = "line {:02d} " + "x" * 21 + "\n"
    # the last 100 bytes, from a line's start
    assert text == DROPPED.format(210) + "".join(line.format(i) for i in range(7, 10))
    # more than the bound in one beat: its end is kept
    beats.send(a, err="E" * 250)
    assert read(client, auth, "k", stream="err").text == DROPPED.format(150) + "E" * 100
    kept = db.session.execute(select(func.sum(CHUNKS.c.size), func.min(CHUNKS.c.size))).one()
    db.session.commit()
    assert kept[0] <= 100 and kept[1] > 0  # no chunk left empty


def test_the_per_board_bound_drops_the_boards_oldest_output(app, client):
    app.config["LOG_MAX_PER_BOARD"] = 800
    auth = make_board(client)
    ids = claim(client, auth, ["a", "b", "c"])
    beats = Beats(client, auth)
    for round_ in range(3):
        for key, a in ids.items():
            beats.send(a, out=f"{key}{round_} " + "." * 96 + "\n")  # 100 bytes
    # 900 bytes passed 800: the oldest were dropped down to 7/8 of the bound
    counter = db.session.execute(select(BOARD_LOGS.c.n)).scalar_one()
    kept = db.session.execute(select(func.sum(CHUNKS.c.size))).scalar_one()
    db.session.commit()
    assert counter == kept <= 700
    assert read(client, auth, "a").text.startswith(DROPPED.format(100) + "a1 ")
    assert read(client, auth, "c").text.startswith("c0 ")  # the newest kept whole


def test_deleting_a_board_deletes_its_logs(client):
    auth = make_board(client)
    other = make_board(client, "other")
    a = claim(client, auth, ["k"])["k"]
    b = claim(client, other, ["k"], board="other")["k"]
    Beats(client, auth).send(a, out="mine\n")
    Beats(client, other, board="other").send(b, out="theirs\n")
    assert client.delete("/api/v1/boards/logs", headers=auth).status_code == 200
    for table in (CHUNKS, ATTEMPT_LOGS, BOARD_LOGS):
        assert db.session.execute(select(func.count()).select_from(table)).scalar_one() == 1
    db.session.commit()
    assert read(client, other, "k", board="other").text == "theirs\n"


def test_a_later_attempt_is_the_default_and_earlier_ones_stay(client):
    auth = make_board(client)
    a = claim(client, auth, ["k"])["k"]
    Beats(client, auth).send(a, out="first try\n")
    client.post("/api/v1/boards/logs/fail", headers=auth, json={"attempt_id": a, "error": "x"})
    r = client.post("/api/v1/boards/logs/claim", json={"stage": 0, "worker": "w1"}, headers=auth)
    b = r.json["jobs"][0]["attempt_id"]
    Beats(client, auth).send(b, out="second try\n")
    r = read(client, auth, "k")
    assert r.text == "second try\n" and r.headers["X-Jobserver-Attempt"] == "2"
    assert read(client, auth, "k", attempt=1).text == "first try\n"
    assert read(client, auth, "k", attempt=1).headers["X-Jobserver-Attempt-Running"] == "false"
    # a finished attempt followed: what it kept, then the end
    assert read(client, auth, "k", attempt=1, follow=1).text == "first try\n"


def test_stdout_and_stderr_read_in_the_order_they_came(client):
    auth = make_board(client)
    a = claim(client, auth, ["k"])["k"]
    r = client.post("/api/v1/boards/logs/heartbeat", headers=auth, json={
        "worker": "w1", "running": [a], "chunks": {str(a): [
            {"stream": "out", "offset": 0, "text": "compute\n"},
            {"stream": "err", "offset": 0, "text": "warning\n"},
            {"stream": "out", "offset": 8, "text": "done\n"}]}})
    assert r.status_code == 200
    assert read(client, auth, "k").text == "compute\nwarning\ndone\n"
    too_many = [{"stream": "out", "offset": i, "text": "x"} for i in range(1001)]
    r = client.post("/api/v1/boards/logs/heartbeat", headers=auth, json={
        "worker": "w1", "running": [a], "chunks": {str(a): too_many}})
    assert r.status_code == 400 and "chunks" in r.json["message"]


def test_follow_keeps_the_connection_alive_and_ends_with_the_attempt(client, monkeypatch):
    from jobserver import joblogs

    monkeypatch.setattr(joblogs, "POLL", 0.05)
    monkeypatch.setattr(joblogs, "KEEPALIVE", 0.2)
    auth = make_board(client)
    a = claim(client, auth, ["k"])["k"]
    beats = Beats(client, auth)
    beats.send(a, out="hello\n")
    r = client.get("/api/v1/boards/logs/logs/k?follow=1", headers=auth, buffered=False)
    assert r.headers["X-Accel-Buffering"] == "no"
    pieces = iter(r.response)
    assert next(pieces) == b"hello\n"
    assert next(pieces) == b"\0"  # a silence: the keep-alive
    beats.send(a, out="bye\n")
    assert next(pieces) == b"bye\n"
    client.post("/api/v1/boards/logs/advance", headers=auth, json={"attempts": [
        {"attempt_id": a}]})
    assert list(pieces) == []  # the attempt ended: so does the answer
    r.close()


def test_the_pages_log_route_is_guarded_by_the_view_password(app, client):
    auth = make_board(client)
    a = claim(client, auth, ["k/1"])["k/1"]
    Beats(client, auth).send(a, out="hello\n")
    app.config["VIEW_PASSWORD"] = "secret"
    assert client.get("/boards/logs/logs/k/1").status_code == 401
    r = client.get("/boards/logs/logs/k/1", auth=("anyone", "secret"))
    assert r.status_code == 200 and r.text == "hello\n"
    assert r.headers["X-Jobserver-Attempt-Running"] == "true"
    assert r.headers["X-Jobserver-Log-More"] == "false"
    page = client.get("/boards/logs/jobs/k/1", auth=("anyone", "secret")).text
    assert 'id="live-log"' in page and 'data-url="/boards/logs/logs/k/1"' in page


def test_an_older_workers_attempt_shows_its_tail_once_it_ended(client):
    auth = make_board(client)
    a = claim(client, auth, ["old"])["old"]
    client.post("/api/v1/boards/logs/heartbeat", headers=auth,
                json={"worker": "w1", "running": [a], "logs": {str(a): "--- stdout ---\nhi\n"}})
    assert read(client, auth, "old").text == ""  # while it runs: the job page shows the tail
    client.post("/api/v1/boards/logs/advance", headers=auth,
                json={"attempts": [{"attempt_id": a, "log": "--- stdout ---\nhi\nbye\n"}]})
    r = read(client, auth, "old")
    assert r.text == ("[jobserver: the worker of this attempt sent only the tail of its output "
                      "(an older jobworker): here it is]\n--- stdout ---\nhi\nbye\n")
    assert read(client, auth, "old", after=r.headers["X-Jobserver-Log-Cursor"]).text == ""


def test_migration_0008_keeps_the_jobs_of_an_existing_database(tmp_path):
    from jobserver import create_app
    from jobserver.dialect import close_writer
    from tests.conftest import sqlite_at_revision

    path = tmp_path / "old.sqlite"
    old = sqlite_at_revision(path, "0007")
    old.executescript("""
        INSERT INTO boards (id, name, created_at, auto_requeue, max_attempts)
            VALUES (1, 'b', 0, 1, 3);
        INSERT INTO jobs (id, board_id, key, payload, stage, entered_at, flagged, attempts, state)
            VALUES (1, 1, 'a', 'null', 1, 0, 0, 1, 'active');
        INSERT INTO attempts (id, job_id, board_id, stage, started_at, outcome, worker)
            VALUES (7, 1, 1, 0, 0, 'running', 'w');
    """)
    old.commit()
    old.close()
    app = create_app({"DATABASE_URL": f"sqlite:///{path}", "SWEEP_MODE": "off"})  # migrates
    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(
            Job.__table__)).scalar_one() == 1
        assert db.session.execute(select(func.count()).select_from(CHUNKS)).scalar_one() == 0
        db.session.commit()
        close_writer(db.engine)
        db.engine.dispose()


def test_concurrent_heartbeats_past_both_bounds_keep_the_counter_exact(app):
    """8 workers beat at once (threads: on PostgreSQL, real concurrent
    transactions) while the board is past its bound: each heartbeat trims
    under the board's counter row, so none waits on another's deletes."""
    import threading

    from jobserver import lifecycle

    app.config.update(LOG_MAX_PER_JOB=600, LOG_MAX_PER_BOARD=3000)
    b = lifecycle.create_board("busy", [0, 5, 0])
    lifecycle.push(b.id, [lifecycle.NewJob(f"j{i}", "null", 0) for i in range(16)])
    held = {w: [j.attempt_id for j in lifecycle.claim(b.id, 0, 2, worker=f"w{w}", lease=True)]
            for w in range(8)}
    errors = []

    def beat(w: int) -> None:
        with app.app_context():
            try:
                ends = {a: {"out": 0, "err": 0} for a in held[w]}
                for n in range(25):
                    chunks = {}
                    for a in held[w]:
                        stream = "out" if n % 3 else "err"
                        text = f"w{w} a{a} beat {n:02d} ".ljust(59, ".") + "\n"
                        chunks[a] = [{"stream": stream, "offset": ends[a][stream],
                                      "text": text}]
                        ends[a][stream] += len(text)
                    lifecycle.heartbeat(b.id, f"w{w}", held[w], chunks=chunks)
            except Exception as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)

    threads = [threading.Thread(target=beat, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    counter = db.session.execute(select(BOARD_LOGS.c.n)).scalar_one()
    per_attempt = db.session.execute(select(CHUNKS.c.attempt_id, func.sum(CHUNKS.c.size))
                                     .group_by(CHUNKS.c.attempt_id)).all()
    db.session.commit()
    assert counter == sum(n for _, n in per_attempt) <= 3000
    assert all(n <= 600 for _, n in per_attempt)


# ------------------------------------------------------------ the worker side


def test_the_capture_holds_both_streams_in_order_until_acknowledged():
    from worker_client.output import Capture

    c = Capture()
    c.out.feed(b"a\n")
    c.err.feed(b"caf\xc3")  # a character cut between two reads
    c.err.feed(b"\xa9\n")
    c.out.feed(b"b\x00\n")  # NUL: stored as U+FFFD, counted as such
    sent = c.unsent()
    assert sent == [{"stream": "out", "offset": 0, "text": "a\n"},
                    {"stream": "err", "offset": 0, "text": "café\n"},
                    {"stream": "out", "offset": 2, "text": "b\ufffd\n"}]
    c.out.feed(b"c\n")  # printed while the heartbeat was on its way
    c.acknowledge(sent)
    assert c.unsent() == [{"stream": "out", "offset": 7, "text": "c\n"}]
    assert c.unsent() == [{"stream": "out", "offset": 7, "text": "c\n"}]  # until acknowledged


def test_the_capture_drops_the_oldest_past_its_bound_and_sends_in_slices(monkeypatch):
    from worker_client import output

    monkeypatch.setattr(output, "LIVE_HELD", 10)
    c = output.Capture()
    c.out.feed(b"0123456789abcdef")
    assert c.unsent() == [{"stream": "out", "offset": 6, "text": "6789abcdef"}]
    assert c.unsent(limit=4) == [{"stream": "out", "offset": 6, "text": "6789"}]
    c.acknowledge(c.unsent(limit=4))
    assert c.unsent() == [{"stream": "out", "offset": 10, "text": "abcdef"}]


def test_heartbeats_carry_new_output_and_resend_what_a_failed_one_did_not():
    from worker_client.client import Job
    from worker_client.output import Capture
    from worker_client.runner import Runner, RunOptions, _Running

    class Source:
        heartbeat_every = 1.0
        live_logs = True

        def __init__(self) -> None:
            self.beats: list[dict] = []
            self.down = False

        def heartbeat(self, samples, logs, notes=None, chunks=None):
            if self.down:
                raise ConnectionError("server down")
            self.beats.append(chunks)
            return set()

    source = Source()
    runner = Runner(source, RunOptions(stage=0, command=["true"]), tty=False)  # type: ignore
    r = _Running(Job("k", None, 0, attempt_id=5), capture=Capture())
    runner.running[5] = r
    r.capture.out.feed(b"one\n")
    runner._heartbeat()
    source.down = True
    r.capture.out.feed(b"two\n")
    runner._heartbeat()  # lost: kept for the next one
    source.down = False
    r.capture.err.feed(b"oops\n")
    runner._heartbeat()
    runner._heartbeat()  # nothing new: no chunks
    assert source.beats == [
        {5: [{"stream": "out", "offset": 0, "text": "one\n"}]},
        {5: [{"stream": "out", "offset": 4, "text": "two\n"},
             {"stream": "err", "offset": 0, "text": "oops\n"}]},
        None]


def test_following_a_job_that_has_not_started_waits_for_its_first_attempt(client,
                                                                           monkeypatch):
    from jobserver import joblogs

    monkeypatch.setattr(joblogs, "POLL", 0.05)
    monkeypatch.setattr(joblogs, "KEEPALIVE", 0.2)
    auth = make_board(client)
    client.post("/api/v1/boards/logs/jobs", json=[{"key": "later"}, {"key": "never"}],
                headers=auth)
    r = client.get("/api/v1/boards/logs/logs/later?follow=1", headers=auth, buffered=False)
    assert r.status_code == 200 and r.headers["X-Jobserver-Attempts"] == "0"
    pieces = iter(r.response)
    assert next(pieces) == b"\0"  # at once: the headers go out with it
    assert next(pieces) == b"\0"  # waiting, kept alive
    r2 = client.post("/api/v1/boards/logs/claim", json={"stage": 0, "worker": "w1"},
                     headers=auth)
    a = r2.json["jobs"][0]["attempt_id"]
    Beats(client, auth).send(a, out="started\n")
    assert next(pieces) == b"started\n"
    client.post("/api/v1/boards/logs/advance", headers=auth, json={"attempts": [
        {"attempt_id": a}]})
    assert list(pieces) == []
    r.close()
    # a job cancelled before it ran: the follower is told by the end of the answer
    client.post("/api/v1/boards/logs/cancel", json={"keys": ["never"]}, headers=auth)
    r = client.get("/api/v1/boards/logs/logs/never?follow=1", headers=auth)
    assert r.status_code == 200 and r.text == "\0"
    # without follow, or for a given attempt: 404 as before
    assert read(client, auth, "never").status_code == 404
    assert read(client, auth, "never", follow=1, attempt=1).status_code == 404
