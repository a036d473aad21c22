"""The worker side of workflows without a server: the client's new calls,
`jobworker submit/retry/priority` argument handling, the notes of a job's
output (@event/@log/@var), command jobs in the runner, and the Python
workflow builder.  (Against a real server: tests/integration/
test_commands_as_jobs.py and test_workflow_readme.py.)"""
from __future__ import annotations

import gzip
import json
import re
from typing import Any, Callable

import pytest
from click.testing import CliRunner

from worker_client import ApiError, BashTask, Client, CommandTask, Task, Workflow
from worker_client.cli import main
from worker_client.cli_workflows import default_key
from worker_client.client import Job
from worker_client.notes import MAX_PENDING, MAX_TEXT, Notes, parse
from worker_client.runner import Runner, RunOptions

URL = "http://127.0.0.1:9"  # never reached: requests are answered by a fake


class FakeApi:
    """Stands in for Client._request: records each call and answers with
    ``answer(method, path, body)`` (a dict, or an exception to raise)."""

    def __init__(self, answer: Callable[[str, str, Any], Any] | None = None) -> None:
        self.calls: list[tuple[str, str, Any, Any]] = []
        self.answer = answer or (lambda m, p, b: {})

    def __call__(self, client: Client, method: str, path: str, json_body: Any = None,
                 data: bytes | None = None, headers: Any = None, params: Any = None,
                 conflict_ok_on_retry: bool = False) -> Any:
        body = json.loads(gzip.decompress(data)) if data is not None else json_body
        self.calls.append((method, path, body, params))
        got = self.answer(method, path, body)
        if isinstance(got, Exception):
            raise got
        return got


@pytest.fixture
def api(monkeypatch) -> FakeApi:
    fake = FakeApi()
    monkeypatch.setattr(Client, "_request", lambda self, *a, **kw: fake(self, *a, **kw))
    return fake


def push_answer(created: int = 1, existing: int = 0, changed: int = 0, keys=()) -> dict:
    return {"created": created, "existing": existing, "changed": changed,
            "changed_keys": list(keys)}


def cli(*args: str, **kw: Any):
    return CliRunner().invoke(main, ["--url", URL, "--board", "b", "--token", "t", *args], **kw)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------- client calls


def test_push_passes_new_fields_through_and_sums_changed_over_chunks(api):
    api.answer = lambda m, p, b: push_answer(1, len(b) - 1, len(b) - 1,
                                             [j["key"] for j in b[1:]])
    jobs = [{"key": f"k{i}", "payload": None, "after": ["k0"], "priority": 3,
             "max_attempts": 2} for i in range(5)]
    got = Client(URL, "b", "t").push(jobs, chunk=2, strict=True)
    assert got == {"created": 3, "existing": 2, "changed": 2, "changed_keys": ["k1", "k3"]}
    assert [c[2] for c in api.calls] == [jobs[0:2], jobs[2:4], jobs[4:5]]
    assert all(c[3] == {"strict": "true"} for c in api.calls)
    Client(URL, "b", "t").push(jobs[:1])
    assert api.calls[-1][3] is None  # not strict: no parameter


def test_push_answer_of_a_server_without_changed(api):
    api.answer = lambda m, p, b: {"created": 1, "existing": 0}
    assert Client(URL, "b", "t").push([{"key": "a"}]) == push_answer(1, 0)


def test_retry_priority_and_patch_bodies(api):
    api.answer = lambda m, p, b: ({"retried": 2} if p == "/retry" else
                                  {"changed": 1} if p == "/priority" else {"max_running": 4})
    c = Client(URL, "b", "t")
    assert c.retry(keys=["a", "b"]) == 2
    assert c.retry(failed=True, cancelled=True) == 4
    assert c.set_priority(["a"], -7) == 1
    assert c.patch_board(max_running=None) == {"max_running": 4}
    c.patch_board(max_running=4, max_attempts=5)
    assert [(m, p, b) for m, p, b, _ in api.calls] == [
        ("POST", "/retry", {"keys": ["a", "b"]}),
        ("POST", "/retry", {"state": "failed"}), ("POST", "/retry", {"state": "cancelled"}),
        ("POST", "/priority", {"keys": ["a"], "priority": -7}),
        ("PATCH", "", {"max_running": None}),
        ("PATCH", "", {"max_running": 4, "max_attempts": 5})]
    for bad in ({}, {"keys": ["a"], "failed": True}):
        with pytest.raises(ValueError):
            c.retry(**bad)
    with pytest.raises(ValueError):
        c.patch_board()


def test_heartbeat_sends_notes_by_attempt(api):
    api.answer = lambda m, p, b: {"cancelled": [], "lost": []}
    c = Client(URL, "b", "t")
    c.heartbeat(notes={7: [{"kind": "log", "message": "hi"}], 8: []})
    assert api.calls[-1][2]["notes"] == {"7": [{"kind": "log", "message": "hi"}]}
    c.heartbeat()
    assert "notes" not in api.calls[-1][2]


# ------------------------------------------------------------------- notes


@pytest.mark.parametrize("line, note", [
    ("@event=[CONVERGED:after 40 steps]",
     {"kind": "event", "name": "CONVERGED", "message": "after 40 steps"}),
    ("  @log=[reading input.dat]  ", {"kind": "log", "message": "reading input.dat"}),
    ("@var=[energy:-1.5]", {"kind": "var", "name": "energy", "value": "-1.5"}),
    ("@var=[path:/a:b]", {"kind": "var", "name": "path", "value": "/a:b"}),
    ("@log=[a [nested] text]", {"kind": "log", "message": "a [nested] text"}),
    ("@event=[DONE:]", {"kind": "event", "name": "DONE", "message": ""}),
    ("@var=[:no name]", None), ("@event=[no colon]", None), ("@log=[unclosed", None),
    ("say @log=[not at the start]", None), ("@other=[x:y]", None), ("plain text", None),
])
def test_parse_note_lines(line, note):
    assert parse(line) == note


def test_notes_are_bounded_and_vars_kept():
    notes = Notes()
    notes.feed("@var=[x:" + "y" * (MAX_TEXT + 10) + "]")
    notes.feed("@var=[x:2]")
    assert notes.result() == {"x": "2"}
    assert len(notes.take()[0]["value"]) == MAX_TEXT
    for i in range(MAX_PENDING + 5):
        notes.feed(f"@log=[{i}]")
    first = notes.take(600)
    assert [n["message"] for n in first[:2]] == ["0", "1"] and len(first) == 600
    rest = []
    while notes:
        rest += notes.take(1000)
    assert len(first) + len(rest) == MAX_PENDING + 1  # and one saying what was dropped
    assert rest[-1]["message"] == ("jobworker: 5 notes dropped (more than 10000 between two "
                                   "heartbeats)")


# ---------------------------------------------------- commands in the runner


class FakeSource:
    """Records what a runner reports, in order."""

    heartbeat_every = 60.0

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        self.log: list[tuple] = []

    def claim(self, n: int) -> list[Job]:
        got, self.jobs = self.jobs[:n], self.jobs[n:]
        return got

    def orphans(self):
        from worker_client.sources import Orphans
        return Orphans(0, 0, None)

    def done(self, job, log_tail, result=None):
        self.log.append(("done", job.key, result))

    def failed(self, job, error, exit_code, log_tail):
        self.log.append(("failed", job.key, error))
        return "failed"

    def release(self, jobs):
        self.log.append(("release", [j.key for j in jobs]))

    def heartbeat(self, samples, logs, notes=None):
        self.log.append(("beat", {k: list(v) for k, v in (notes or {}).items()}))
        return set()

    def goodbye(self):
        pass


def run_jobs(jobs: list[Job], command=(), **opts) -> FakeSource:
    source = FakeSource(jobs)
    options = RunOptions(stage=0, command=list(command), **opts)
    Runner(source, options, tty=False).run()  # type: ignore[arg-type]
    return source


def test_jobs_run_their_own_commands_with_cwd_env_and_notes(tmp_path, monkeypatch):
    monkeypatch.setenv("KEPT", "from-worker")
    monkeypatch.setenv("OVERRIDDEN", "worker")
    script = ('echo "@log=[in $PWD]"; echo "@event=[START:$KEPT $OVERRIDDEN]" >&2; '
              'echo "@var=[answer:42]"; echo "@var=[answer:43]"; echo plain')
    job = Job("j1", {"command": ["bash", "-c", script], "cwd": str(tmp_path),
                     "env": {"OVERRIDDEN": "job"}}, 0, attempt_id=5)
    source = run_jobs([job])
    beats = [e for e in source.log if e[0] == "beat"]
    assert source.log[-1] == ("done", "j1", {"answer": "43"})
    assert source.log.index(beats[-1]) < len(source.log) - 1  # notes before the report
    sent = [n for _, by_attempt in beats for n in by_attempt.get(5, [])]
    assert {"kind": "log", "message": f"in {tmp_path}"} in sent
    assert {"kind": "event", "name": "START", "message": "from-worker job"} in sent
    assert [n["value"] for n in sent if n["kind"] == "var"] == ["42", "43"]


def test_a_malformed_command_fails_the_job_and_data_stops_the_worker():
    source = run_jobs([Job("argv", {"command": "ls -l"}, 0, attempt_id=2)])
    errors = {key: error for kind, key, error in source.log if kind == "failed"}
    assert errors == {"argv": 'job argv: its payload\'s "command" must be a non-empty list '
                              'of strings (argv), got "ls -l"'}
    # a job that is data reached a worker without a command: the worker was
    # started wrong, not the job: given back, and the worker stops
    runner_source = FakeSource([Job("data", {"input": "x.dat"}, 0, attempt_id=1),
                                Job("none", None, 0, attempt_id=3)])
    stats = Runner(runner_source, RunOptions(stage=0, command=[]),  # type: ignore[arg-type]
                   tty=False).run()
    assert [e for e in runner_source.log if e[0] == "failed"] == []
    assert ("release", ["data"]) in runner_source.log
    assert stats.stopped_by.startswith("job data has no command of its own: its payload has "
                                       'no "command"')
    assert "jobworker run --stage S -- COMMAND" in stats.stopped_by


def test_a_missing_program_or_directory_is_one_line(tmp_path):
    source = run_jobs([Job("p", {"command": ["no-such-program-xyz"]}, 0, attempt_id=1),
                       Job("d", {"command": ["true"], "cwd": str(tmp_path / "gone")}, 0,
                           attempt_id=2)])
    errors = {key: error for kind, key, error in source.log if kind == "failed"}
    assert errors["p"] == "cannot start 'no-such-program-xyz': No such file or directory"
    assert re.fullmatch(rf"its working directory {tmp_path}/gone is not a directory on \S+",
                        errors["d"])


def test_the_given_command_still_wins_and_notes_work_there_too():
    source = run_jobs([Job("k", {"command": ["false"]}, 0, attempt_id=1)],
                      command=["sh", "-c", "echo '@var=[key:{key}]'"])
    assert source.log[-1] == ("done", "k", {"key": "k"})


def test_a_failed_command_sends_its_notes_and_no_result():
    source = run_jobs([Job("f", {"command": ["sh", "-c", "echo '@var=[x:1]'; exit 3"]}, 0,
                           attempt_id=9)])
    assert source.log[-2] == ("beat", {9: [{"kind": "var", "name": "x", "value": "1"}]})
    assert source.log[-1][:2] == ("failed", "f")


def test_notes_travel_with_running_jobs_heartbeats_at_most_1000_a_beat():
    from worker_client.output import Capture
    from worker_client.runner import _Running

    source = FakeSource([])
    runner = Runner(source, RunOptions(stage=0, command=[]), tty=False)  # type: ignore
    for aid in (1, 2):
        r = _Running(Job(f"k{aid}", None, 0, attempt_id=aid))
        r.capture = Capture(notes=r.notes)
        runner.running[aid] = r
        r.capture.out.feed(b"".join(b"@log=[%d]\n" % i for i in range(700)))
    runner._heartbeat()
    runner._heartbeat()
    runner._heartbeat()
    sizes = [{k: len(v) for k, v in beat.items()} for _, beat in source.log]
    assert sizes == [{1: 700, 2: 300}, {2: 400}, {}]


# ------------------------------------------------------------------ submit


def test_submit_pushes_a_command_job_and_prints_its_key(api, monkeypatch, tmp_path):
    api.answer = lambda m, p, b: push_answer()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    r = cli("submit", "--key", "sim-1", "--after", "prep", "--after", "mesh", "--after", "prep",
            "--priority", "-3", "--max-attempts", "2", "--cwd", "--env", "OMP_NUM_THREADS",
            "--env", "MODE=fast", "--", "./sim", "--n", "4", "-v")
    assert r.exit_code == 0, r.output
    assert r.stdout == "sim-1\n"
    [(method, path, body, params)] = api.calls
    assert (method, path, params) == ("POST", "/jobs", None)
    assert body == [{"key": "sim-1", "after": ["prep", "mesh"], "priority": -3,
                     "max_attempts": 2,
                     "payload": {"command": ["./sim", "--n", "4", "-v"], "cwd": str(tmp_path),
                                 "env": {"OMP_NUM_THREADS": "4", "MODE": "fast"}}}]


def test_submit_default_key_is_readable_and_unique(api):
    api.answer = lambda m, p, b: push_answer()
    r = cli("submit", "--", "/opt/bin/simulate.py", "x")
    assert r.exit_code == 0, r.output
    key = r.stdout.strip()
    assert re.fullmatch(r"simulate\.py-\d{8}-\d{6}-[0-9a-f]{4}", key)
    assert api.calls[0][2] == [{"key": key, "payload": {"command": ["/opt/bin/simulate.py",
                                                                     "x"]}}]
    assert len({default_key(["a b/c d"]) for _ in range(50)}) > 40
    assert re.fullmatch(r"c_d-\d{8}-\d{6}-[0-9a-f]{4}", default_key(["a b/c d"]))


def test_submit_says_when_the_key_was_there_already(api):
    api.answer = lambda m, p, b: push_answer(0, 1, 1, ["k"])
    r = cli("submit", "--key", "k", "--", "true")
    assert r.exit_code == 0 and r.stdout == "k\n"
    assert "warning: job k was on the board already, with another command" in r.stderr
    api.answer = lambda m, p, b: push_answer(0, 1)
    r = cli("submit", "--key", "k", "--strict", "--", "true")
    assert r.stderr.strip() == "job k was on the board already: left as it was"
    assert api.calls[-1][3] == {"strict": "true"}


def test_submit_after_an_unknown_key_prints_the_servers_line(api):
    api.answer = lambda m, p, b: ApiError(400, "bad_request",
                                          "job 1: 'after' names keys that are not on the "
                                          "board: nope")
    r = cli("submit", "--after", "nope", "--", "true")
    assert r.exit_code == 1
    assert lines(r.output) == ["Error: job 1: 'after' names keys that are not on the board: "
                               "nope (400 bad_request)"]


@pytest.mark.parametrize("args, message", [
    ([], "Missing argument 'COMMAND...'"),
    (["--env", "NOT_SET_ANYWHERE_42", "--", "x"], "--env NOT_SET_ANYWHERE_42: not set here"),
    (["--env", "1X=2", "--", "x"], "--env 1X=2: expected NAME or NAME=VALUE"),
    (["--priority", "2147483648", "--", "x"], "Invalid value for '--priority'"),
    (["--max-attempts", "0", "--", "x"], "Invalid value for '--max-attempts'"),
])
def test_submit_usage_errors(api, args, message):
    r = cli("submit", *args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert api.calls == []


# ---------------------------------------------------------- retry, priority


def test_retry_arguments(api):
    api.answer = lambda m, p, b: {"retried": 1 if "keys" in b else 12}
    r = cli("retry", "--failed")
    assert (r.exit_code, r.output) == (0, "retried 12 job(s)\n")
    assert api.calls[-1][2] == {"state": "failed"}
    r = cli("retry", "--failed", "--cancelled")
    assert r.output == "retried 24 job(s)\n"
    r = cli("retry", "a", "b", "a")
    assert r.output == ("retried 1 job(s) (1 of the 2 named: not failed or cancelled, or not "
                        "on the board)\n")
    assert api.calls[-1][2] == {"keys": ["a", "b"]}
    calls = len(api.calls)
    for args, message in ((["retry"], "name job keys, or pass --failed and/or --cancelled"),
                          (["retry", "a", "--failed"], "not both")):
        r = cli(*args)
        assert r.exit_code == 2 and message in r.output, r.output
    assert len(api.calls) == calls


def test_priority_arguments(api):
    api.answer = lambda m, p, b: {"changed": len(b["keys"])}
    r = cli("priority", "-5", "a", "b")
    assert (r.exit_code, r.output) == (0, "set the priority of 2 job(s) to -5\n")
    assert api.calls[-1][2] == {"keys": ["a", "b"], "priority": -5}
    api.answer = lambda m, p, b: {"changed": 0}
    assert "(1 of the 1 named: not waiting or blocked" in cli("priority", "3", "x").output
    for args, message in ((["priority"], "Missing argument 'PRIORITY'"),
                          (["priority", "3"], "Missing argument 'KEYS...'"),
                          (["priority", "high", "k"], "'high' is not a valid integer")):
        r = cli(*args)
        assert r.exit_code == 2 and message in r.output, r.output


@pytest.mark.parametrize("command, words", [
    ("submit", ["--after KEY", "--priority", "--cwd", "--env NAME[=VALUE]", "prints its key",
                "without a shell"]),
    ("retry", ["--failed", "--cancelled", "fresh attempt budget", "blocked"]),
    ("priority", ["highest first", "negative allowed", "waiting or blocked"]),
    ("run", ["without COMMAND, run each job's own command", "@event=[NAME:message]"]),
])
def test_help_explains(command, words):
    out = " ".join(CliRunner().invoke(main, [command, "--help"]).output.split())
    for w in words:
        assert w in out, (w, out)


def test_interactive_commands_fail_fast_on_a_server_that_is_down(monkeypatch):
    from tests.conftest import free_port

    monkeypatch.setattr("worker_client.cli.BRISK", 0.5)
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["submit", "--", "true"], ["retry", "--failed"], ["priority", "1", "k"]):
        r = CliRunner().invoke(main, ["--url", url, "--board", "b", "--token", "t", *args])
        assert r.exit_code == 1
        assert lines(r.output) == [f"Error: cannot reach the server at {url} (connection "
                                   f"refused): is it running? check --url/JOBSERVER_URL"]


# ---------------------------------------------------------------- workflow


def test_tasks_as_jobs():
    prep = BashTask("prep", "python prep.py > data.csv", cwd="/work", env={"A": 1})
    sim = CommandTask("sim", ["./sim", "--n", "4"], upstream=[prep, "mesh", prep], priority=2,
                      max_attempts=5)
    agg = Task("agg", {"note": "by hand"}, upstream=[sim], stage=2)
    assert prep.job() == {"key": "prep", "payload": {"command": [
        "bash", "-c", "python prep.py > data.csv"], "cwd": "/work", "env": {"A": "1"}}}
    assert sim.job() == {"key": "sim", "payload": {"command": ["./sim", "--n", "4"]},
                         "after": ["prep", "mesh"], "priority": 2, "max_attempts": 5}
    assert agg.job() == {"key": "agg", "payload": {"note": "by hand"}, "after": ["sim"],
                         "stage": 2}
    for bad in (lambda: Task(""), lambda: BashTask("b", " "), lambda: CommandTask("c", [])):
        with pytest.raises(ValueError):
            bad()


def test_workflow_orders_upstream_first_and_refuses_cycles_and_twins():
    wf = Workflow("b", URL, "t")
    agg = Task("agg", upstream=[Task(f"s{i}", upstream=["prep"]) for i in range(3)])
    wf.add_task(agg)  # upstream tasks come along
    wf.add_task(Task("prep"))
    wf.add_task(Task("prep"))  # the same again: harmless
    assert [t.key for t in wf.ordered()] == ["prep", "s0", "s1", "s2", "agg"]
    with pytest.raises(ValueError, match="two different tasks with the key 'prep'"):
        wf.add_task(Task("prep", payload=1))
    a, b = Task("a"), Task("b")
    a.upstream, b.upstream = [b], [a]
    wf.add_task(a)
    with pytest.raises(ValueError, match=r"a cycle among 2 task\(s\): a, b"):
        wf.ordered()


def test_workflow_settings_fall_back_to_the_environment(monkeypatch):
    for name in ("JOBSERVER_URL", "JOBSERVER_BOARD", "JOBSERVER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="missing board/JOBSERVER_BOARD, url/JOBSERVER_URL, "
                                         "token/JOBSERVER_TOKEN"):
        Workflow()
    monkeypatch.setenv("JOBSERVER_URL", URL)
    monkeypatch.setenv("JOBSERVER_BOARD", "envboard")
    monkeypatch.setenv("JOBSERVER_TOKEN", "tok")
    wf = Workflow()
    assert (wf.client.url, wf.board) == (URL, "envboard")
    assert wf.client._session.headers["Authorization"] == "Bearer tok"
    assert Workflow("other").board == "other"


def test_workflow_push_is_the_server_answer_and_warns_of_changes(api, caplog):
    api.answer = lambda m, p, b: push_answer(1, 1, 1, ["a"])
    wf = Workflow("b", URL, "t")
    a = wf.add_task(Task("a", 1))
    wf.add_task(Task("z", 2, upstream=[a]))
    with caplog.at_level("WARNING"):
        got = wf.push(strict=False)
    assert got == push_answer(1, 1, 1, ["a"])
    assert api.calls[0][2] == [{"key": "a", "payload": 1},
                               {"key": "z", "payload": 2, "after": ["a"]}]
    assert "1 task(s) differ from what board b holds for their keys (left as they are): a" \
        in caplog.text
    wf.push(strict=True)
    assert api.calls[-1][3] == {"strict": "true"}


def test_workflow_wait_follows_the_board_and_returns_what_did_not_get_done(api):
    statuses = iter([
        {"total": 4, "done": 0, "waiting": 1, "running": 0, "blocked": 3},
        {"total": 4, "done": 1, "waiting": 0, "running": 2, "blocked": 1},
        {"total": 4, "done": 2, "waiting": 0, "running": 0, "blocked": 1, "failed": 1},
    ])
    listed = {"failed": [{"key": "s1", "error": "exit code 1: boom"},
                         {"key": "other", "error": "x"}],
              "cancelled": [], "blocked": [{"key": "agg"}]}

    def answer(method, path, body):
        if path == "":
            return {"counts": {}, "progress": next(statuses)}
        if path == "/jobs":
            return {"jobs": listed[api.calls[-1][3]["state"]], "next_cursor": None}
        return {"retried": 1}

    api.answer = answer
    wf = Workflow("b", URL, "t")
    prep = wf.add_task(Task("prep"))
    sims = wf.add_tasks(Task(f"s{i}", upstream=[prep]) for i in range(2))
    wf.add_task(Task("agg", upstream=sims))
    left = wf.wait(interval=0.01, progress=False)
    assert [(t.key, t.state, t.error) for t in left] == [("s1", "failed", "exit code 1: boom"),
                                                         ("agg", "blocked", None)]
    assert wf.retry_failed() == 1
    assert api.calls[-1][1:3] == ("/retry", {"keys": ["s1"]})


def test_workflow_wait_times_out_and_shows_a_bar(api, capsys):
    api.answer = lambda m, p, b: {"counts": {}, "progress": {"total": 2, "done": 1,
                                                             "waiting": 1, "running": 0}}
    wf = Workflow("b", URL, "t")
    with pytest.raises(TimeoutError, match=r"board b: not finished after 0.05 s \(1 done, "
                                           r"1 waiting, 0 running"):
        wf.wait(interval=0.01, timeout=0.05)


def test_a_post_to_a_path_the_server_does_not_route_says_check_the_url(api):
    api.answer = lambda m, p, b: ApiError(405, "Method Not Allowed", "The method is not "
                                          "allowed for the requested URL.",
                                          url=f"{URL}/static/api/v1/boards/b/jobs")
    r = cli("submit", "--", "true")
    assert r.exit_code == 1
    assert lines(r.output) == [f"Error: no jobserver API at {URL}/static/api/v1/boards/b/jobs "
                               f"(405): check --url/JOBSERVER_URL (the server's address, e.g. "
                               f"http://host:5000)"]


def test_job_shows_its_place_in_the_workflow_and_its_last_notes():
    from worker_client.show import job_lines

    job = {"key": "sim", "state": "blocked", "stage": 0, "attempts": 0, "entered_at": None,
           "payload": {"command": ["true"]}, "priority": 5, "max_attempts": 2,
           "after": [{"key": "prep", "state": "failed"}, {"key": "mesh", "state": "done"}],
           "blocked_by": ["prep"],
           "downstream": [{"key": f"agg{i}", "state": "blocked"} for i in range(12)],
           "downstream_total": 40,
           "events": [{"kind": "pushed", "detail": None}]
           + [{"kind": "log", "detail": {"message": f"line {i}"}} for i in range(12)]
           + [{"kind": "event", "detail": {"name": "START", "message": "go"}},
              {"kind": "var", "detail": {"name": "energy", "value": "-1.5"}}]}
    out = job_lines(job, now=0)
    assert out[3:8] == [
        "  priority    5", "  max tries   2 at each stage (this job's own)",
        "  runs after  prep (failed), mesh (done)", "  blocked by  prep",
        "  runs before " + ", ".join(f"agg{i} (blocked)" for i in range(10)) + " and 30 more"]
    notes = out[out.index("  notes (last 10 of 14):"):]
    assert notes[1] == "    log   line 4"
    assert notes[-3:] == ["    event START: go", "    var   energy = -1.5",
                          "  log tail    (none yet)"]
    plain = job_lines({"key": "k", "state": "waiting", "stage": 0, "payload": None}, now=0)
    assert not [line for line in plain if "priority" in line or "notes" in line]
