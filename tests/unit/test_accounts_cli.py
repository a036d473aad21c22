"""Accounts and roles as a person uses them: `jobserver user/member/token`
on the server's machine, `jobworker token/share` from anywhere, against a
real server process (a view password set), through real HTTP."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import ROOT, start_live_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_live_server(tmp_path_factory.mktemp("accounts"), JOBSERVER_VIEW_PASSWORD="pw")
    yield s
    s.stop()


def run(server, program: str, *args: str, stdin: str | None = None, env: dict | None = None):
    """`jobserver ...` (on the server's instance folder) or `jobworker ...`."""
    module = "jobserver" if program == "jobserver" else "worker_client"
    full_env = dict(os.environ, JOBSERVER_INSTANCE=str(server.instance), **(env or {}))
    full_env.pop("JOBSERVER_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", module, *args], input=stdin, env=full_env,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def last_line(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("program,args", [
    ("jobserver", ["user", "--help"]), ("jobserver", ["user", "create", "--help"]),
    ("jobserver", ["user", "key", "create", "--help"]), ("jobserver", ["member", "add", "--help"]),
    ("jobserver", ["token", "create", "--help"]), ("jobworker", ["token", "create", "--help"]),
    ("jobworker", ["token", "revoke", "--help"]), ("jobworker", ["share", "--help"])])
def test_help_of_each_new_command(server, program, args):
    r = run(server, program, *args)
    assert r.returncode == 0 and "Usage:" in r.stdout and r.stderr == ""
    if args[-2:] == ["create", "--help"] and args[0] == "token":
        assert "--role" in r.stdout and "--expires" in r.stdout


def test_a_pool_token_a_share_link_and_revocation_from_the_command_line(server):
    # on the server's machine: a user who owns a board
    key = last_line(run(server, "jobserver", "user", "create", "ana", "--password",
                        stdin="ana-secret\n"))
    assert key.startswith("jsu_")
    assert run(server, "jobserver", "user", "list").stdout.split()[:4] == [
        "ana", "user", "password", "1"]
    r = requests.post(f"{server.url}/api/v1/boards", json={"name": "ana-sims"},
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == 201
    owner = {"JOBSERVER_URL": server.url, "JOBSERVER_BOARD": "ana-sims", "JOBSERVER_TOKEN": key}
    # a worker token for a pool, from anywhere, with the owner's key
    made = run(server, "jobworker", "token", "create", "--role", "worker", "--expires", "7d",
               env=owner)
    worker_token = last_line(made)
    assert worker_token.startswith("jsb_") and "worker" in made.stderr
    worker = {**owner, "JOBSERVER_TOKEN": worker_token}
    pushed = run(server, "jobworker", "push", "-", stdin='{"key": "a"}\n', env=worker)
    assert pushed.returncode == 1
    assert pushed.stderr.count("\n") == 1 and "may not push" in pushed.stderr
    assert run(server, "jobworker", "push", "-", stdin='{"key": "a"}\n', env=owner) \
        .returncode == 0
    assert run(server, "jobworker", "status", env=worker).returncode == 0  # every role reads
    # the pool's token runs the job through (claim, heartbeat, advance)
    ran = run(server, "jobworker", "run", "--stage", "0", "--max-jobs", "1", "--", "true",
              env=worker)
    assert ran.returncode == 0, ran.stderr
    done = requests.get(f"{server.url}/api/v1/boards/ana-sims/jobs/a", timeout=30,
                        headers={"Authorization": f"Bearer {worker_token}"}).json()
    assert (done["stage"], done["state"]) == (2, "done")
    # a typo'd role: one clear line, exit 2
    typo = run(server, "jobworker", "token", "create", "--role", "wroker", env=owner)
    assert typo.returncode == 2 and "'wroker' is not one of" in typo.stderr
    typo = run(server, "jobserver", "token", "create", "ana-sims", "--role", "wroker")
    assert typo.returncode == 2 and "'wroker' is not one of" in typo.stderr
    bad = run(server, "jobworker", "token", "create", "--role", "worker", "--expires", "7x",
              env=owner)
    assert bad.returncode == 2 and "--expires" in bad.stderr
    # a wrong URL: one line naming what to check
    wrong = run(server, "jobworker", "share", env={**owner, "JOBSERVER_URL": server.url + "/x"})
    assert wrong.returncode == 1 and "check --url" in wrong.stderr
    assert wrong.stderr.count("\n") == 1
    # a worker token cannot make tokens
    refused = run(server, "jobworker", "token", "create", "--role", "owner", env=worker)
    assert refused.returncode == 1 and "worker token may not manage the board's tokens" \
        in refused.stderr and "needs the role owner" in refused.stderr
    # a share link: the board's page through real HTTP, not another board's
    url = last_line(run(server, "jobworker", "share", env=owner))
    assert url.startswith(f"{server.url}/s/jsb_")
    browser = requests.Session()
    page = browser.get(url, timeout=30)
    assert page.status_code == 200 and page.url == f"{server.url}/boards/ana-sims"
    home = browser.get(server.url + "/", headers={"Accept": "text/html"}, timeout=30)
    assert 'data-board="ana-sims"' in home.text
    requests.post(f"{server.url}/api/v1/boards", json={"name": "other"},
                  headers={"Authorization": "Bearer test-admin"}, timeout=30)
    assert browser.get(f"{server.url}/boards/other", timeout=30).status_code == 403
    assert 'data-board="other"' not in browser.get(
        server.url + "/", headers={"Accept": "text/html"}, timeout=30).text
    # revoked on the server's machine (another process): refused within the cache's second
    listed = run(server, "jobworker", "token", "list", env=owner).stdout
    share_id = next(line.split("\t")[0] for line in listed.splitlines() if "share link" in line)
    assert "viewer" in listed and "never expires" in listed
    assert run(server, "jobserver", "token", "revoke", "ana-sims", share_id).returncode == 0
    deadline = time.monotonic() + 3
    while browser.get(f"{server.url}/boards/ana-sims", timeout=30).status_code == 200:
        assert time.monotonic() < deadline, "the revoked share link still opens the board"
        time.sleep(0.1)
    assert browser.get(f"{server.url}/boards/ana-sims", timeout=30).status_code == 401
    # and the worker token, revoked with jobworker: the API refuses it
    wid = next(line.split("\t")[0] for line in listed.splitlines() if "\tworker\t" in line)
    assert last_line(run(server, "jobworker", "token", "revoke", wid, env=owner)) \
        == f"token {wid} revoked"
    time.sleep(1.1)
    gone = run(server, "jobworker", "status", env=worker)
    assert gone.returncode == 1 and "revoked" in gone.stderr


def test_login_page_over_http(server):
    run(server, "jobserver", "user", "create", "lea", "--password", stdin="lea-secret\n")
    s = requests.Session()
    s.headers["Accept"] = "text/html"  # as a browser
    r = s.get(server.url + "/", timeout=30)
    assert r.status_code == 401 and "Log in" in r.text
    r = s.post(server.url + "/login", data={"name": "lea", "password": "lea-secret"},
               timeout=30)
    assert r.status_code == 200 and "lea" in r.text  # redirected home, logged in
    assert "jobserver_login" in s.cookies
