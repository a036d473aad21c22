"""The `jobworker` command through click's CliRunner, against a real server
(one per module; each test on a board of its own)."""
from __future__ import annotations

import http.server
import itertools
import threading
import time

import pytest
import requests
from click.testing import CliRunner

from tests.conftest import free_port, start_live_server
from worker_client import Client
from worker_client.cli import main

_boards = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_live_server(tmp_path_factory.mktemp("jobworker"))
    yield s
    s.stop()


@pytest.fixture
def new_board(server):
    made: list[Client] = []

    def make(lifetimes=(0, 1, 0), max_attempts: int = 3) -> Client:
        name = f"cli{next(_boards)}"
        r = requests.post(f"{server.url}/api/v1/boards",
                          json={"name": name, "lifetimes": list(lifetimes),
                                "max_attempts": max_attempts}, timeout=30)
        r.raise_for_status()
        c = Client(server.url, name, r.json()["token"], retry_for=10)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def token(c: Client) -> str:
    return c._session.headers["Authorization"].split()[1]


def cli(c: Client, *args: str, **kw):
    return CliRunner().invoke(main, ["--url", c.url, "--board", c.board, "--token", token(c),
                                     *args], **kw)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------ 1. fail fast


def test_url_without_scheme_is_refused_at_once():
    t0 = time.monotonic()
    r = CliRunner().invoke(main, ["--url", "127.0.0.1:5000", "--board", "b", "--token", "t",
                                  "status"])
    assert time.monotonic() - t0 < 1
    assert r.exit_code == 2
    assert lines(r.output) == ["Error: --url must start with http:// or https://, "
                               "got '127.0.0.1:5000'"]


def test_status_against_a_closed_port_fails_within_seconds_in_one_line():
    url = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    r = CliRunner().invoke(main, ["--url", url, "--board", "b", "--token", "t", "status"])
    elapsed = time.monotonic() - t0
    assert elapsed < 10, elapsed
    assert r.exit_code == 1
    assert lines(r.output) == [f"Error: cannot reach the server at {url} (connection refused): "
                               f"is it running? check --url/JOBSERVER_URL"]


@pytest.mark.parametrize("args", [["push", "-"], ["cancel", "--all"], ["status", "--json"]])
def test_every_interactive_command_is_brisk(args, monkeypatch):
    monkeypatch.setattr("worker_client.cli.BRISK", 0.5)  # the same policy, shorter
    url = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    r = CliRunner().invoke(main, ["--url", url, "--board", "b", "--token", "t", *args],
                           input='{"key": "a"}\n')
    assert time.monotonic() - t0 < 5
    assert r.exit_code == 1
    assert len(lines(r.output)) == 1 and "cannot reach the server" in r.output


def test_refused_token_and_unknown_board_say_what_to_check(new_board):
    c = new_board()
    r = CliRunner().invoke(main, ["--url", c.url, "--board", c.board, "--token", "nope",
                                  "status"])
    assert r.exit_code == 1
    assert lines(r.output) == ["Error: the server refused the token (unknown or revoked "
                               "token): check --token/JOBSERVER_TOKEN"]
    r = CliRunner().invoke(main, ["--url", c.url, "--board", "no-such-board", "--token",
                                  token(c), "status"])
    assert r.exit_code == 1
    assert lines(r.output) == ["Error: no board named 'no-such-board'"]


def test_a_wrong_path_or_another_web_server_is_one_line(server):
    r = CliRunner().invoke(main, ["--url", server.url + "/static", "--board", "b", "--token",
                                  "t", "status"])
    assert r.exit_code == 1
    assert lines(r.output) == [f"Error: no jobserver API at {server.url}/static/api/v1/boards/b "
                               f"(404): check --url/JOBSERVER_URL (the server's address, "
                               f"e.g. http://host:5000)"]

    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>hello</html>")

        def log_message(self, *args: object) -> None:
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{other.server_address[1]}"
    try:
        r = CliRunner().invoke(main, ["--url", url, "--board", "b", "--token", "t", "status"])
    finally:
        other.shutdown()
        other.server_close()
    assert r.exit_code == 1
    assert len(lines(r.output)) == 1 and f"is {url} a jobserver?" in r.output


def test_retries_go_through_urllib3_with_a_time_budget():
    """One retry policy: a 5xx is retried, and a 409 answering a retried
    report means its first try went through (the job is reported)."""
    from worker_client import Unavailable
    from worker_client.client import Job

    answers = [(503, b"{}"), (409, b'{"error": "Conflict", "message": "closed"}')]
    seen = []

    class Flaky(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(self.path)
            status, body = answers.pop(0) if answers else (503, b"{}")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with Client(f"http://127.0.0.1:{srv.server_address[1]}", "b", "t",
                    retry_for=1.5) as c:
            assert c.fail(Job("k", None, 0, attempt_id=1), "boom") is None
            assert seen == ["/api/v1/boards/b/fail"] * 2
            t0 = time.monotonic()
            with pytest.raises(Unavailable, match="kept answering HTTP 503"):
                c.cancel()
            assert 0.5 < time.monotonic() - t0 < 3
    finally:
        srv.shutdown()
        srv.server_close()
