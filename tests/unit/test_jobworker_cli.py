"""The `jobworker` command through click's CliRunner, against a real server
(one per module; each test on a board of its own)."""
from __future__ import annotations

import http.server
import io
import itertools
import json
import logging
import re
import threading
import time

import pytest
import requests
from click.testing import CliRunner

from tests.conftest import ADMIN, free_port, start_live_server
from worker_client import Client
from worker_client.cli import main
from worker_client.output import file_stem
from worker_client.runner import Runner, RunOptions
from worker_client.show import status_lines
from worker_client.sources import ApiSource
from worker_client.terminal import CLEAR, StatusLine

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
        r = requests.post(f"{server.url}/api/v1/boards", headers=ADMIN,
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


@pytest.mark.parametrize("args", [["push", "-"], ["cancel", "--all"], ["job", "k"], ["workers"],
                                  ["watch"], ["status", "--json"]])
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


# ---------------------------------------------------------- 2. exit codes


def test_run_exits_3_when_a_job_fails_for_good_and_counts_jobs_not_attempts(new_board):
    c = new_board(max_attempts=2)
    c.push([{"key": "bad", "payload": 1}, {"key": "ok1", "payload": 0},
            {"key": "ok2", "payload": 0}])
    r = cli(c, "run", "--stage", "0", "--", "sh", "-c",
            'test "{payload}" = 0 || { echo boom >&2; exit 4; }')
    assert r.exit_code == 3, r.output
    assert "done 2, failed for good 1 (2 failed attempts, 1 retried)" in r.output
    assert c.status()["failed"] == 1


def test_run_exits_0_when_a_failed_attempt_is_retried_and_succeeds(new_board):
    c = new_board(max_attempts=3)
    c.push([{"key": "flaky", "payload": None}])
    r = cli(c, "run", "--stage", "0", "--", "sh", "-c", 'test "{attempt}" -ge 2')
    assert r.exit_code == 0, r.output
    assert "done 1, failed for good 0 (1 failed attempt, 1 retried)" in r.output


def test_classic_run_exits_3_on_failed_attempts(server):
    jobix = 7000 + next(_boards)
    requests.get(f"{server.url}/init/0/5/0", headers={"jobix": str(jobix)},
                 timeout=30).raise_for_status()
    from worker_client.classic import ClassicClient

    ClassicClient(server.url, jobix, retry_for=10).push({1: {"jobstage": 0, "jobcmd": {}}})
    r = CliRunner().invoke(main, ["--url", server.url, "run", "--classic", "--jobix", str(jobix),
                                  "--stage", "0", "--", "false"])
    assert r.exit_code == 3, r.output
    assert "done 0, failed attempts 1 (left to the sweeper to retry or fail)" in r.output


def test_run_help_documents_exit_codes():
    out = CliRunner().invoke(main, ["run", "--help"]).output
    assert "Exit status:" in out
    assert re.search(r"3\s+jobs it ran failed for good", out)


# -------------------------------------------------------------- 3. output


def test_output_dir_keeps_each_attempts_stdout_and_stderr(new_board, tmp_path):
    c = new_board(max_attempts=3)
    key = "set/a b"
    c.push([{"key": key, "payload": None}])
    out = tmp_path / "logs" / "run1"
    r = cli(c, "run", "--stage", "0", "--output-dir", str(out), "--", "sh", "-c",
            'echo "out-{attempt}"; echo "err-{attempt}" >&2; test "{attempt}" -ge 2')
    assert r.exit_code == 0, r.output
    stem1, stem2 = file_stem(key, 0, 1), file_stem(key, 0, 2)
    assert re.fullmatch(r"set_a_b-[0-9a-f]{8}\.s0\.a1", stem1)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{stem1}.out", f"{stem1}.err", f"{stem2}.out", f"{stem2}.err"])
    assert (out / f"{stem1}.out").read_text() == "out-1\n"
    assert (out / f"{stem1}.err").read_text() == "err-1\n"
    assert (out / f"{stem2}.out").read_text() == "out-2\n"


def test_file_names_of_plain_and_awkward_keys():
    assert file_stem("run7", 2, 1) == "run7.s2.a1"
    assert file_stem("a/b", 0, 1) != file_stem("a_b", 0, 1)
    assert not file_stem("..", 0, 1).startswith(".")
    assert "/" not in file_stem("../../etc/passwd", 0, 1)


def test_tee_prefixes_each_line_with_the_job_key(new_board):
    c = new_board()
    c.push([{"key": "k1", "payload": None}, {"key": "k2", "payload": None}])
    r = cli(c, "run", "--stage", "0", "--tee", "--", "sh", "-c",
            'printf "hello {key}\\nsecond line" ; echo "warn {key}" >&2')
    assert r.exit_code == 0, r.output
    for k in ("k1", "k2"):
        assert f"[{k}] hello {k}\n" in r.stdout
        assert f"[{k}] second line\n" in r.stdout  # a last line without newline too
        assert f"[{k}] warn {k}\n" in r.stderr


def test_heartbeats_come_at_least_every_ten_seconds(new_board):
    c = new_board(lifetimes=(0, 60, 0))  # an hour: lease/4 would be 15 min
    source = ApiSource(c, RunOptions(stage=0, command=["true"]))
    assert source.heartbeat_every == 10.0


def test_heartbeats_carry_only_the_output_tails_that_changed():
    from worker_client.client import Job
    from worker_client.output import Capture
    from worker_client.runner import _Running

    class Source:
        heartbeat_every = 1.0

        def __init__(self) -> None:
            self.beats: list[dict[int, str]] = []

        def heartbeat(self, samples, logs):
            self.beats.append(dict(logs))
            return set()

    source = Source()
    runner = Runner(source, RunOptions(stage=0, command=["true"]), tty=False)  # type: ignore
    r = _Running(Job("k", None, 0, attempt_id=41), capture=Capture())
    runner.running[41] = r
    r.capture.out.feed(b"step 1\n")
    runner._heartbeat()
    runner._heartbeat()
    r.capture.err.feed(b"x" * 20_000)
    runner._heartbeat()
    first, second, third = source.beats
    assert first == {41: "--- stdout ---\nstep 1\n"} and second == {}
    assert len(third[41]) <= 16_000 and "step 1" in third[41] and third[41].endswith("xxx")


# ------------------------------------------------------ 4. read commands


def test_job_shows_state_attempts_error_result_and_log(new_board):
    c = new_board(max_attempts=1)
    c.push([{"key": "bad", "payload": {"x": 1}}])
    r = cli(c, "run", "--stage", "0", "--", "sh", "-c",
            'echo "reading input"; echo "cannot open input.dat" >&2; exit 4')
    assert r.exit_code == 3
    r = cli(c, "job", "bad")
    assert r.exit_code == 0, r.output
    out = r.output
    assert out.startswith("job bad: failed at stage 0")
    assert re.search(r"attempts\s+1 at this stage", out)
    assert "error       exit code 4: cannot open input.dat" in out
    assert "    reading input" in out and "    cannot open input.dat" in out  # the log tail
    assert json.loads(cli(c, "job", "bad", "--json").output)["key"] == "bad"

    c.push([{"key": "good", "payload": None}])
    [job] = c.claim(0)
    c.advance(job, result={"energy": -1.5})
    out = cli(c, "job", "good").output
    assert 'result      {"energy":-1.5}' in out


def test_workers_lists_hosts_load_and_ages(new_board):
    c = new_board()
    c.push([{"key": "w", "payload": None}])
    c.claim(0)
    c.heartbeat(resources={"host": "node7", "cpu_percent": 12.4, "memory_used_percent": 40.2})
    r = cli(c, "workers")
    assert r.exit_code == 0, r.output
    header, row = lines(r.output)
    assert header.split() == ["NAME", "HOST", "STATE", "JOBS", "CPU", "MEM", "LAST", "SEEN"]
    assert row.split()[0] == c.worker and "alive" in row.split()
    assert re.search(r"\b1\s+12%\s+40%\s+\d+ s ago$", row), row

    c.push([{"key": "w2", "payload": None}])
    assert cli(c, "run", "--stage", "0", "--", "true").exit_code == 0
    rows = lines(cli(c, "workers").output)[1:]
    stopped = [r for r in rows if " stopped " in r]  # `run` says goodbye with its load
    assert len(stopped) == 1 and re.search(r"\b0\s+\d+%\s+\d+%\s+\d+ s ago$", stopped[0])


def test_status_prints_ages_not_epochs():
    now = 1_800_000_000.0
    s = {"total": 3, "counts": {"0": 1, "1": 1, "2": 1}, "failed": 0, "cancelled": 0,
         "alive_workers": 1, "lost_workers": 1, "stages": [],
         "progress": {"total": 3, "done": 1, "waiting": 1, "running": 1, "failed": 0,
                      "cancelled": 0, "per_minute": 0.0, "eta_seconds": None, "progress": 33.3,
                      "health": "attention", "health_reason": "1 lost worker(s)"}}
    workers = [{"name": "w1", "host": "n1", "state": "alive", "last_seen": now - 4},
               {"name": "w2", "host": "n2", "state": "lost", "last_seen": now - 185,
                "resources": {"cpu_percent": 99}}]
    text = "\n".join(status_lines("b", s, None, workers, now=now))
    assert "last heartbeat 4 s ago" in text
    assert "w2 on n2, last seen 3 min ago, last cpu 99%" in text
    assert not re.search(r"\d{9}", text)


def test_status_groups_200_failures_into_a_few_lines(new_board):
    c = new_board(max_attempts=1)
    c.push({"key": f"f{i:03d}", "payload": None} for i in range(200))
    jobs = c.claim(0, 200)
    for i, job in enumerate(jobs):
        error = ("exit code 1: boom" if i < 150 else
                 "Traceback (most recent call last):\n  File x\nValueError: bad input"
                 if i < 195 else f"exit code 2: disk {i} full")
        c.fail(job, error)
    r = cli(c, "status")
    assert r.exit_code == 0, r.output
    out = lines(r.output)
    assert len(out) <= 20, r.output
    assert "200 failed jobs, 7 distinct errors:" in out
    assert "  150 x exit code 1: boom   [f000, f001, f002, ...]" in out
    assert "   45 x ValueError: bad input   [f150, f151, f152, ...]" in out


def test_watch_follows_the_board_until_done_and_exits_0(new_board):
    c = new_board()
    c.push({"key": f"w{i}", "payload": None} for i in range(6))
    worker = Client(c.url, c.board, token(c), retry_for=10)

    def work() -> None:
        with worker:
            while True:
                jobs = worker.claim(0)
                if not jobs:
                    return
                time.sleep(0.3)
                worker.advance(jobs)

    t = threading.Thread(target=work)
    t.start()
    try:
        r = cli(c, "watch", "--interval", "0.2")
    finally:
        t.join()
    assert r.exit_code == 0, r.output
    out = lines(r.output)
    assert len(out) >= 3  # one line per refresh on a non-terminal
    assert re.search(r"\d+%: \d+ done, \d+ waiting, \d+ running, 0 failed", out[0])
    assert out[-1] == f"board {c.board}: nothing left to run: 6 done, 0 failed, 0 cancelled"


def test_watch_exits_3_with_the_failures_when_jobs_failed(new_board):
    c = new_board(max_attempts=1)
    c.push([{"key": "ok", "payload": None}, {"key": "bad", "payload": None}])
    for job in c.claim(0, 2):
        c.fail(job, "exit code 9: no luck") if job.key == "bad" else c.advance(job)
    r = cli(c, "watch")
    assert r.exit_code == 3, r.output
    assert "  1 x exit code 9: no luck   [bad]" in r.output
    assert r.output.rstrip().endswith("nothing left to run: 1 done, 1 failed, 0 cancelled")


# ------------------------------------------------------------- 5. smaller


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_records_are_written_above_the_status_line():
    term = FakeTerminal()
    handler = logging.StreamHandler(term)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    status = StatusLine(term)
    try:
        status.capture_logging()
        status.show("done 3  running 1/2")
        logging.getLogger("worker_client.test").warning("job k failed")
        status.release_logging()
    finally:
        root.removeHandler(handler)
    assert term.getvalue() == (CLEAR + "done 3  running 1/2" + CLEAR + "WARNING job k failed\n"
                               + "done 3  running 1/2")


def test_an_idle_continuous_worker_sees_a_new_job_within_seconds(new_board):
    c = new_board()
    opts = RunOptions(stage=0, command=["true"], continuous=True, max_jobs=1)
    runner = Runner(ApiSource(c, opts), opts, tty=False)
    t = threading.Thread(target=runner.run)
    t.start()
    time.sleep(7.5)  # idle long enough for a backoff to have grown
    c.push([{"key": "late", "payload": None}])
    pushed = time.monotonic()
    t.join(timeout=15)
    assert not t.is_alive()
    assert time.monotonic() - pushed < 4
    assert runner.stats.done == 1


def test_worker_pyproject_builds_the_worker_alone():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from tests.conftest import ROOT

    meta = tomllib.loads((ROOT / "worker_client" / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "jobworker"
    assert sorted(meta["project"]["dependencies"]) == ["click>=8.1", "psutil>=5.9",
                                                       "requests>=2.31"]
    assert meta["project"]["scripts"] == {"jobworker": "worker_client.cli:main"}
    cfg = (ROOT / "setup.cfg").read_text()
    version = re.search(r"^version = (\S+)", cfg, re.M).group(1)
    assert meta["project"]["version"] == version, "keep both versions in step"
    imports = {m for p in (ROOT / "worker_client").glob("*.py")
               for m in re.findall(r"^\s*(?:from|import) (\w+)", p.read_text(), re.M)}
    assert "jobserver" not in imports and "flask" not in imports
