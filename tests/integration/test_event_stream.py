"""The event stream through a real server: `curl -N` (what a person types)
and resumption with Last-Event-ID across the stream's periodic ends."""
from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
import requests

from tests.conftest import ADMIN, require, start_live_server


@pytest.fixture
def server(tmp_path):
    s = start_live_server(tmp_path, JOBSERVER_SSE_MAX_SECONDS="2", JOBSERVER_SSE_HEARTBEAT="0.5")
    yield s
    s.stop()


def new_board(url: str, name: str) -> dict:
    r = requests.post(f"{url}/api/v1/boards", headers=ADMIN,
                      json={"name": name, "lifetimes": [0, 1, 0]}, timeout=30)
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['token']}"}


def messages(text: str) -> list[dict]:
    """The SSE messages of a stream's text: {"id", "data"} or {"comment"}."""
    out = []
    for block in text.split("\n\n"):
        fields: dict = {}
        for line in block.splitlines():
            if line.startswith(":"):
                fields["comment"] = line[1:].strip()
            else:
                name, _, value = line.partition(": ")
                fields[name] = value
        if fields:
            out.append(fields)
    return out


def curl(url: str, *args: str) -> str:
    require(shutil.which("curl") is not None, "curl is missing (apt-get install curl)")
    done = subprocess.run(["curl", "-sS", "-N", "--max-time", "10", *args, url],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_curl_follows_the_stream_and_resumes_with_last_event_id(server):
    auth = new_board(server.url, "sse")
    requests.post(f"{server.url}/api/v1/boards/sse/jobs", headers=auth, timeout=30,
                  json=[{"key": f"j{i}", "payload": i} for i in range(3)]).raise_for_status()
    stream = f"{server.url}/api/v1/boards/sse/events/stream"
    first = messages(curl(stream, "-H", f"Authorization: {auth['Authorization']}"))
    assert first[0] == {"retry": "2000"}
    data = [m for m in first if "data" in m]
    assert [json.loads(m["data"])["key"] for m in data] == ["j0", "j1", "j2"]
    assert any(m.get("comment") == "keep-alive" for m in first)  # heartbeats, then the end
    # a client that saw j0 only comes back with its id: j1 and j2, nothing twice
    again = messages(curl(stream, "-H", f"Authorization: {auth['Authorization']}",
                          "-H", f"Last-Event-ID: {data[0]['id']}"))
    assert [json.loads(m["data"])["key"] for m in again if "data" in m] == ["j1", "j2"]
    # types and key filters; a bad cursor and a missing token are answered
    only = messages(curl(stream + "?key=j2", "-H", f"Authorization: {auth['Authorization']}"))
    assert [json.loads(m["data"])["key"] for m in only if "data" in m] == ["j2"]
    r = requests.get(stream, headers={**auth, "Last-Event-ID": "bogus"}, timeout=10)
    assert r.status_code == 400 and "cursor" in r.json()["message"]
    assert requests.get(stream, timeout=10).status_code == 401


def test_the_pages_stream_needs_no_token(server):
    auth = new_board(server.url, "open")
    requests.post(f"{server.url}/api/v1/boards/open/jobs", headers=auth, timeout=30,
                  json=[{"key": "a/b", "payload": 0}]).raise_for_status()
    got = messages(curl(f"{server.url}/boards/open/events/stream"))
    assert [json.loads(m["data"])["key"] for m in got if "data" in m] == ["a/b"]


def test_each_event_leaves_at_once(server):
    """Not gathered until the stream ends (eventlet buffers 4 KB unless told)."""
    auth = new_board(server.url, "live")
    with requests.get(f"{server.url}/api/v1/boards/live/events/stream",
                      params={"after": "now"}, headers=auth, stream=True, timeout=10) as r:
        lines = r.iter_lines(decode_unicode=True)
        assert next(lines) == "retry: 2000"
        t0 = time.monotonic()
        requests.post(f"{server.url}/api/v1/boards/live/jobs", headers=auth, timeout=30,
                      json=[{"key": "now", "payload": 0}]).raise_for_status()
        for line in lines:
            if line.startswith("data: "):
                assert json.loads(line[6:])["key"] == "now"
                break
        took = time.monotonic() - t0
    assert took < 1.5, f"the event came after {took:.1f} s, with the stream's end"


def test_a_revoked_token_or_share_link_ends_its_open_stream(tmp_path):
    """A stream (events, a followed log) is checked at its start and then
    again every few seconds: revoking the token (or the share link of a
    page's stream) ends it, and its reconnection is refused."""
    s = start_live_server(tmp_path, JOBSERVER_VIEW_PASSWORD="secret")
    try:
        owner = new_board(s.url, "shut")
        api = f"{s.url}/api/v1/boards/shut"
        viewer = requests.post(f"{api}/tokens", headers=owner, timeout=10,
                               json={"role": "viewer"}).json()
        share = requests.post(f"{api}/share", headers=owner, timeout=10, json={}).json()
        page = requests.Session()
        assert page.get(share["url"], timeout=10).status_code == 200  # the cookie
        requests.post(f"{api}/jobs", headers=owner, timeout=10,
                      json=[{"key": "k", "payload": 0}]).raise_for_status()
        streams = [
            requests.get(f"{api}/events/stream", stream=True, timeout=30,
                         headers={"Authorization": f"Bearer {viewer['token']}"}),
            page.get(f"{s.url}/boards/shut/events/stream", stream=True, timeout=30),
            requests.get(f"{api}/logs/k", params={"follow": 1}, stream=True, timeout=30,
                         headers={"Authorization": f"Bearer {viewer['token']}"})]
        assert [r.status_code for r in streams] == [200, 200, 200]
        for t in (viewer, share):
            requests.delete(f"{api}/tokens/{t['id']}", headers=owner,
                            timeout=10).raise_for_status()
        t0 = time.monotonic()
        for r in streams:
            for _ in r.iter_content(chunk_size=None):
                pass  # until the server ends it
            r.close()
        assert time.monotonic() - t0 < 8
        again = requests.get(f"{api}/events/stream", timeout=10,
                             headers={"Authorization": f"Bearer {viewer['token']}"})
        assert again.status_code == 401
        assert page.get(f"{s.url}/boards/shut/events/stream", timeout=10).status_code == 401
    finally:
        s.stop()
