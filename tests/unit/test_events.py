"""The event log: what each change writes, the cursor under concurrent
writers (SQLite and PostgreSQL), filters, long-poll, retention (410)."""
from __future__ import annotations

import random
import threading
import time

import pytest

from jobserver import lifecycle
from jobserver.dialect import write_transaction
from jobserver.extensions import db
from jobserver.lifecycle import events
from jobserver.lifecycle.common import _NEW_EVENT, _event
from jobserver.models import EventKind
from tests.conftest import ADMIN


@pytest.fixture
def board(client):
    r = client.post("/api/v1/boards", headers=ADMIN,
                    json={"name": "ev", "lifetimes": [0, 1, 0], "max_attempts": 2})
    assert r.status_code == 201
    return {"Authorization": f"Bearer {r.json['token']}"}


def settle() -> None:
    """PostgreSQL: wait until every event written so far is readable (an
    event is, once all transactions older than its own have ended, in the
    whole cluster: another test's database counts too)."""
    if db.engine.dialect.name != "postgresql":
        return
    deadline = time.monotonic() + 10
    with db.engine.connect() as conn:
        while conn.exec_driver_sql(
                "SELECT coalesce(max(tx), 0) >= pg_snapshot_xmin(pg_current_snapshot())"
                "::text::bigint FROM events").scalar():
            assert time.monotonic() < deadline, "a transaction stays open"
            conn.rollback()
            time.sleep(0.02)


def read(client, auth, **params):
    settle()
    r = client.get("/api/v1/boards/ev/events", headers=auth, query_string=params)
    assert r.status_code == 200, r.json
    return r.json


def kinds_of(page, key=None):
    return [(e["kind"], e["key"]) for e in page["events"] if key is None or e["key"] == key]


def test_a_jobs_life_is_in_the_log_in_order(client, board):
    client.post("/api/v1/boards/ev/jobs", headers=board,
                json=[{"key": "a", "payload": 1}, {"key": "b", "payload": 2},
                      {"key": "c", "payload": 3, "after": ["a"]}])
    r = client.post("/api/v1/boards/ev/claim", headers=board,
                    json={"stage": 0, "n": 2, "worker": "w1"})
    by_key = {j["key"]: j["attempt_id"] for j in r.json["jobs"]}
    assert client.post("/api/v1/boards/ev/advance", headers=board,
                       json={"attempts": [{"attempt_id": by_key["a"]}]}).status_code == 200
    assert client.post("/api/v1/boards/ev/fail", headers=board,
                       json={"attempt_id": by_key["b"], "error": "boom"}).status_code == 200
    assert client.post("/api/v1/boards/ev/cancel", headers=board,
                       json={"keys": ["b"]}).status_code == 200
    assert client.post("/api/v1/boards/ev/retry", headers=board,
                       json={"keys": ["b"]}).status_code == 200
    client.post("/api/v1/boards/ev/heartbeat", headers=board,
                json={"worker": "w1", "running": [], "stopped": True})
    page = read(client, board)
    assert kinds_of(page) == [
        ("pushed", "a"), ("pushed", "b"), ("pushed", "c"), ("blocked", "c"),
        ("worker-alive", None), ("claimed", "a"), ("claimed", "b"),
        ("unblocked", "c"), ("done", "a"),
        ("requeued", "b"), ("cancelled", "b"), ("retried", "b"), ("worker-stopped", None)]
    assert page["events"][3]["stage"] == 0
    claimed = page["events"][5]
    assert claimed["detail"] == {"attempt": by_key["a"], "worker": "w1"}
    assert page["events"][4]["detail"]["worker"] == "w1"
    cursors = [e["cursor"] for e in page["events"]]
    assert len(set(cursors)) == len(cursors) and page["next_cursor"] == cursors[-1]
    # one job's events, one kind, and nothing after the last cursor
    assert kinds_of(read(client, board, key="b")) == [
        ("pushed", "b"), ("claimed", "b"), ("requeued", "b"), ("cancelled", "b"),
        ("retried", "b")]
    assert kinds_of(read(client, board, types="claimed,done")) == [
        ("claimed", "a"), ("claimed", "b"), ("done", "a")]
    assert read(client, board, after=page["next_cursor"]) == {
        "events": [], "next_cursor": page["next_cursor"]}


def test_the_classic_protocol_and_the_sweep_write_their_events(app, client):
    board = lifecycle.ensure_board(5)
    lifecycle.set_lifetimes_if_unset(board.id, [0, 1, 0])
    lifecycle.push(board.id, [("x", "null", 0), ("y", "null", 0)])
    for _ in range(2):
        lifecycle.claim(board.id, 0)
    lifecycle.update_job(board.id, "x", 2)
    lifecycle.update_job(board.id, "y", 0)  # given back by a classic worker
    lifecycle.claim(board.id, 0, worker="w9", lease=True)
    lifecycle.sweep(now=time.time() + 3600, lost_after=60)  # overstays, worker silent
    settle()
    kinds = [(e["kind"], e["key"]) for e in events.read(board.id).events]
    assert kinds[:6] == [("pushed", "x"), ("pushed", "y"), ("claimed", "x"), ("claimed", "y"),
                         ("done", "x"), ("released", "y")]
    assert ("worker-alive", None) in kinds and ("worker-lost", None) in kinds
    assert ("requeued", "y") in kinds
    [again] = lifecycle.claim(board.id, 0, worker="w9", lease=True)  # the lost worker is back
    settle()
    last = events.read(board.id, kinds=["claimed"]).events[-1]
    assert last["detail"] == {"attempt": again.attempt_id, "worker": "w9"}
    assert last["key"] == again.key and last["stage"] == 0
    alive = [e["detail"] for e in events.read(board.id, kinds=["worker-alive"]).events]
    assert [d.get("back", False) for d in alive] == [False, True]
    assert all(d["worker"] == "w9" for d in alive)


def test_filtered_followers_move_past_what_they_skip(client, board):
    client.post("/api/v1/boards/ev/jobs", headers=board,
                json=[{"key": f"j{i}", "payload": i} for i in range(5)])
    page = read(client, board, types="done")
    assert page["events"] == [] and page["next_cursor"] != "0"
    assert read(client, board, after=page["next_cursor"])["events"] == []
    # limit: the cursor stops at the last event given
    first = read(client, board, limit=2)
    assert [k for _, k in kinds_of(first)] == ["j0", "j1"]
    assert first["next_cursor"] == first["events"][-1]["cursor"]
    rest = read(client, board, after=first["next_cursor"])
    assert [k for _, k in kinds_of(rest)] == ["j2", "j3", "j4"]


def test_after_now_and_long_poll_wake_on_a_push(app, client, board):
    head = read(client, board, after="now")
    assert head["events"] == []
    got: dict = {}

    def follower():
        with app.test_client() as c:
            t0 = time.monotonic()
            got["page"] = c.get("/api/v1/boards/ev/events", headers=board,
                                query_string={"after": head["next_cursor"], "wait": 10}).json
            got["took"] = time.monotonic() - t0

    t = threading.Thread(target=follower)
    t.start()
    time.sleep(0.5)
    client.post("/api/v1/boards/ev/jobs", headers=board, json=[{"key": "late", "payload": 0}])
    t.join(15)
    assert kinds_of(got["page"]) == [("pushed", "late")]
    assert 0.4 < got["took"] < 3, got["took"]
    empty_t0 = time.monotonic()
    assert read(client, board, after=got["page"]["next_cursor"], wait=1)["events"] == []
    assert time.monotonic() - empty_t0 >= 0.9


def test_bad_requests_are_answered(client, board):
    for params, code in [({"after": "x1"}, 400), ({"types": "nonsense"}, 400),
                         ({"wait": 61}, 400), ({"limit": 0}, 400), ({"key": "nope"}, 404)]:
        r = client.get("/api/v1/boards/ev/events", headers=board, query_string=params)
        assert r.status_code == code, (params, r.json)
        assert r.json["message"]
    assert client.get("/api/v1/boards/ev/events").status_code == 401


def test_an_expired_cursor_is_gone_and_says_what_to_do(app, client, board):
    client.post("/api/v1/boards/ev/jobs", headers=board,
                json=[{"key": f"j{i}", "payload": i} for i in range(3)])
    first = read(client, board)["events"][0]["cursor"]
    settle()
    assert events.prune(1, now=time.time() + 2 * 86400) == 3
    r = client.get("/api/v1/boards/ev/events", headers=board, query_string={"after": "0"})
    assert r.status_code == 410 and "after=now" in r.json["message"]
    assert client.get("/api/v1/boards/ev/events/stream", headers=board,
                      query_string={"after": first}).status_code == 410
    page = read(client, board)  # from the oldest kept: nothing, and a cursor that works
    assert page["events"] == []
    assert read(client, board, after=page["next_cursor"])["events"] == []
    client.post("/api/v1/boards/ev/jobs", headers=board, json=[{"key": "new", "payload": 0}])
    assert kinds_of(read(client, board, after=page["next_cursor"])) == [("pushed", "new")]
    assert events.prune(0) == 0  # 0 days: keep forever


def test_the_cursor_misses_and_repeats_nothing_under_concurrent_writers(app):
    """8 writers commit events while a follower reads after its cursor.  Some
    writers hold their transaction open a while after writing (on
    PostgreSQL their ids then commit out of order): the follower must still
    see every event exactly once, in cursor order."""
    board = lifecycle.ensure_board(11)
    lifecycle.set_lifetimes_if_unset(board.id, [0, 1, 0])
    stop = threading.Event()
    written = []
    lock = threading.Lock()
    errors = []

    def writer(n: int) -> None:
        rnd = random.Random(n)
        try:
            with app.app_context():
                for i in range(25):
                    if n % 2:  # slow transactions: write, then wait before the commit
                        with write_transaction(db.engine) as conn:
                            conn.execute(_NEW_EVENT, _event(board.id, EventKind.NOTE_LOG,
                                                            time.time(), detail=f"{n}-{i}"))
                            time.sleep(rnd.uniform(0, 0.03))
                    else:  # the lifecycle's own
                        lifecycle.push(board.id, [(f"k{n}-{i}", "null", 0)])
                        got = lifecycle.claim(board.id, 0, worker=f"w{n}", lease=True)
                        for j in got:
                            lifecycle.update_job(board.id, j.key, 2)
                    with lock:
                        written.append((n, i))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    seen: list[str] = []
    cursor = None

    def drain() -> None:
        nonlocal cursor
        while True:
            page = events.read(board.id, cursor, limit=37)
            seen.extend(e["cursor"] for e in page.events)
            cursor = page.next_cursor
            if not page.events:
                return

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        drain()
        time.sleep(0.002)
    for t in threads:
        t.join()
    assert not errors, errors
    settle()
    drain()
    stop.set()
    with db.engine.connect() as conn:
        everything = [str(events.Cursor(tx, i)) for tx, i in conn.exec_driver_sql(
            "SELECT tx, id FROM events WHERE board_id = %d ORDER BY tx, id" % board.id)]
    assert len(written) == 200
    assert len(seen) == len(set(seen)), "an event was read twice"
    assert sorted(seen, key=_key) == seen, "not in cursor order"
    assert set(everything) - set(seen) == set(), "an event was missed"
    assert len(seen) == len(everything) > 200


def _key(text: str) -> tuple[int, int]:
    c = events.parse_cursor(text)
    return (c.tx, c.id)


def test_cursors_parse_and_print_alike():
    assert str(events.Cursor(0, 12)) == "12" and events.parse_cursor("12") == (0, 12)
    assert str(events.Cursor(745, 12)) == "745-12" and events.parse_cursor("745-12") == (745, 12)
    for bad in ("", "-", "a", "1-2-3", "-5", "99999999999999999999"):
        with pytest.raises(lifecycle.LifecycleError):
            events.parse_cursor(bad)


def test_a_prune_during_a_read_is_a_410_not_a_silent_gap(app, client, board, monkeypatch):
    """The retention commits between a follower's reads of the events and
    of the marker: the follower must hear that it fell behind."""
    client.post("/api/v1/boards/ev/jobs", headers=board,
                json=[{"key": f"j{i}", "payload": i} for i in range(4)])
    first = read(client, board)["events"][0]["cursor"]
    real = events._after

    def pruned_meanwhile(*args, **kwargs):
        rows = real(*args, **kwargs)
        events.prune(1, now=time.time() + 2 * 86400)
        return rows

    monkeypatch.setattr(events, "_after", pruned_meanwhile)
    r = client.get("/api/v1/boards/ev/events", headers=board, query_string={"after": first})
    assert r.status_code == 410, r.json
