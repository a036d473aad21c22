"""The app under real Apache 2.4 with Debian's mod_wsgi.

A virtualenv made from /usr/bin/python3 (the interpreter mod_wsgi embeds)
under /var/tmp, readable by www-data, gets `pip install .[postgres,scale]` of
this checkout.  Two configurations: SQLite, wsgi.py in one daemon process with
16 threads; and the scale-out one (deploy/apache-jobserver.conf.example):
PostgreSQL and Redis, three daemon processes for the API and the pages, one
for /socket.io (long-polling sessions live in one process).
"""
from __future__ import annotations

import collections
import hashlib
import os
import shutil
import subprocess
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import socketio

from tests.conftest import (ADMIN, ADMIN_TOKEN, POSTGRES_URL, ROOT, _postgres_available,
                            artifacts_dir, free_port, require, wait_until_up)
from worker_client import Client

from .helpers import counts, push_jobs
from .test_classic_workers import claimed_ids, run_workers

pytestmark = pytest.mark.apache

APACHE = "/usr/sbin/apache2"
MOD_WSGI = "/usr/lib/apache2/modules/mod_wsgi.so"
MODULES = "/usr/lib/apache2/modules"
BASE = Path("/var/tmp/jobserver-apache-test")

COMMON = """
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {run}/httpd.pid
DefaultRuntimeDir {run}
Mutex file:{run} default
ErrorLog {run}/error.log
LogLevel warn
User www-data
Group www-data
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule wsgi_module {modules}/mod_wsgi.so
WSGISocketPrefix {run}/wsgi
"""

# the SQLite site: one daemon process (SQLite has one writer per process)
CONF = """
WSGIDaemonProcess jobserver processes=1 threads=16 python-home={venv} home={site} display-name=jobserver
WSGIProcessGroup jobserver
WSGIApplicationGroup %{{GLOBAL}}
WSGIPassAuthorization On
WSGIScriptAlias / {site}/wsgi.py
<Directory {site}>
    Require all granted
</Directory>
"""


def _source_copy() -> Path:
    """The checkout as an administrator would have it (no build leftovers)."""
    src = BASE / f"src-{os.getpid()}"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "build", "*.egg-info", "test-artifacts", "instance",
        "__pycache__", ".pytest_cache"))
    return src


def _venv() -> Path:
    """A cached virtualenv (by setup.cfg) with this checkout installed plainly."""
    key = hashlib.sha256((ROOT / "setup.cfg").read_bytes()).hexdigest()[:12]
    venv = BASE / f"venv-{key}"
    src = _source_copy()
    try:
        if not (venv / "bin" / "python").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
            # the extras of the scale-out configuration (PostgreSQL, Redis)
            subprocess.run([venv / "bin" / "pip", "install", "-q", f"{src}[postgres,scale]"],
                           check=True)
        else:  # the code may have changed since: reinstall just the package
            subprocess.run([venv / "bin" / "pip", "install", "-q", "--no-deps",
                            "--force-reinstall", str(src)], check=True)
    finally:
        shutil.rmtree(src, ignore_errors=True)
    return venv


def _require_apache() -> None:
    require(os.path.exists(APACHE), f"{APACHE} is missing (apt-get install apache2)")
    require(os.path.exists(MOD_WSGI), f"{MOD_WSGI} is missing (apt-get install libapache2-mod-wsgi-py3)")
    require(os.geteuid() == 0, "Apache must start as root to switch to www-data")
    require(subprocess.run(["/usr/bin/python3", "-c", "import ensurepip"]).returncode == 0,
            "/usr/bin/python3 cannot make virtualenvs (apt-get install python3-venv)")


@contextmanager
def _apache(name: str, conf_text, env: dict[str, str] | None = None,
            before=None):
    """Apache on a free port with the site ``conf_text(port, run, venv, site)``
    (after COMMON), JOBSERVER_* settings from ``env`` (as /etc/apache2/envvars
    would export them), ``before(venv)`` run first (e.g. the migrations)."""
    BASE.mkdir(parents=True, exist_ok=True)
    BASE.chmod(0o755)
    venv = _venv()
    site = BASE / f"site-{name}-{os.getpid()}"
    run = site / "run"
    shutil.rmtree(site, ignore_errors=True)
    run.mkdir(parents=True)
    shutil.copy(ROOT / "wsgi.py", site / "wsgi.py")
    instance = venv / "var" / "jobserver-instance"
    shutil.rmtree(instance, ignore_errors=True)
    instance.mkdir(parents=True)
    shutil.chown(instance, "www-data", "www-data")
    for d in (site, run):
        d.chmod(0o755)
    port = free_port()
    conf = site / "httpd.conf"
    fields = dict(port=port, run=run, modules=MODULES, venv=venv, site=site)
    conf.write_text(COMMON.format(**fields) + conf_text.format(**fields))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("JOBSERVER_")},
           **(env or {})}
    if before is not None:
        before(venv, env)
    proc = subprocess.Popen([APACHE, "-f", str(conf), "-DFOREGROUND"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc, timeout=60)
        yield url
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
        log = (run / "error.log").read_text() if (run / "error.log").exists() else ""
        (artifacts_dir() / f"apache-{name}-error.log").write_text(
            out.decode(errors="replace") + log)
        shutil.rmtree(site, ignore_errors=True)


@pytest.fixture(scope="module")
def apache():
    _require_apache()
    with _apache("sqlite", CONF) as url:
        yield url


def test_pages_and_static_files_from_a_plain_install(apache):
    home = requests.get(apache + "/", headers={"Accept": "text/html"})
    assert home.status_code == 200 and "Job lists" in home.text
    js = requests.get(apache + "/static/vendor/socket.io.min.js")
    assert js.status_code == 200 and len(js.content) > 10_000
    assert requests.get(apache + "/").text.startswith("Hello")


def test_sixteen_classic_workers_through_apache(apache):
    requests.get(f"{apache}/init/60/60/0", headers={"jobix": "16"}).raise_for_status()
    push_jobs(apache, 16, 800)
    ids = claimed_ids(run_workers(apache, 16, 16))
    assert [k for k, c in collections.Counter(ids).items() if c > 1] == []
    assert sorted(ids) == list(range(800))
    assert counts(apache, 16) == {0: 0, 1: 0, 2: 800}


def test_live_page_connects_over_long_polling(apache):
    jobix = 17
    push_jobs(apache, jobix, 10)
    got: list[dict] = []
    arrived = threading.Event()
    sio = socketio.Client()

    @sio.on("board")
    def _board(summary):
        got.append(summary)
        if summary["stages"][1]["count"] == 1:  # the claim below (not an earlier state)
            arrived.set()

    sio.connect(apache, transports=["polling"])
    try:
        assert sio.transport() == "polling"
        assert sio.call("join", {"jobix": jobix}, timeout=10) == {"ok": True}
        requests.get(f"{apache}/get/0", headers={"jobix": str(jobix)}).raise_for_status()
        assert arrived.wait(10), f"no live update of the claim over long-polling: {got}"
        time.sleep(1)
        assert sio.transport() == "polling"  # mod_wsgi: no upgrade offered
    finally:
        sio.disconnect()


# ------------------------------------------- several processes, PostgreSQL, Redis

SCALE_EXAMPLE = ROOT / "deploy" / "apache-jobserver.conf.example"
SCALE_DB = "jobserver_apache_test"
SCALE_REDIS = "redis://127.0.0.1:6379/13"


def _pg_admin(dbname: str = "postgres"):
    import psycopg

    base = POSTGRES_URL.replace("postgresql+psycopg", "postgresql")
    return psycopg.connect(base.rsplit("/", 1)[0] + "/" + dbname, autocommit=True)


def _scale_site() -> str:
    """The example site with this run's paths and port ({...} fields)."""
    text = SCALE_EXAMPLE.read_text().replace("{", "{{").replace("}", "}}")
    text = text.replace("/srv/jobserver/venv", "{venv}").replace("/srv/jobserver", "{site}")
    text, n = re.subn(r"<VirtualHost \*:80>", "<VirtualHost 127.0.0.1:{port}>", text)
    assert n == 1
    return text


def _redis_ok() -> bool:
    try:
        import redis

        redis.Redis.from_url(SCALE_REDIS, socket_connect_timeout=2).flushdb()
        return True
    except Exception:
        return False


@pytest.fixture(scope="module")
def apache_scale():
    _require_apache()
    require(_postgres_available(), f"no PostgreSQL at {POSTGRES_URL}")
    require(_redis_ok(), "no Redis at 127.0.0.1:6379 (or the redis package is missing: "
                         "pip install -e '.[scale]')")
    with _pg_admin() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {SCALE_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {SCALE_DB}")
    env = {"JOBSERVER_DATABASE_URL": POSTGRES_URL.rsplit("/", 1)[0] + "/" + SCALE_DB,
           "JOBSERVER_MESSAGE_QUEUE": SCALE_REDIS, "JOBSERVER_ADMIN_TOKEN": ADMIN_TOKEN,
           "JOBSERVER_LIVE_INTERVAL": "0.25"}

    def migrate(venv: Path, env: dict[str, str]) -> None:
        # once, before the processes, as the user they run as (it may write
        # the instance folder's name-secret)
        subprocess.run(["runuser", "-u", "www-data", "--", venv / "bin" / "jobserver", "db",
                        "upgrade"], env=env, check=True, stdout=subprocess.DEVNULL)

    try:
        with _apache("scale", _scale_site(), env, before=migrate) as url:
            yield url
    finally:
        with _pg_admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {SCALE_DB} WITH (FORCE)")


def test_scale_out_site_runs_four_daemon_processes(apache_scale):
    requests.get(apache_scale + "/").raise_for_status()
    requests.get(apache_scale + "/socket.io/?EIO=4&transport=polling").raise_for_status()
    names = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.split()
    assert names.count("jobserver-api") >= 3 and names.count("jobserver-live") >= 1, names


def test_classic_workers_through_several_processes(apache_scale):
    requests.get(f"{apache_scale}/init/60/60/0", headers={"jobix": "21"}).raise_for_status()
    push_jobs(apache_scale, 21, 800)
    ids = claimed_ids(run_workers(apache_scale, 21, 8))
    assert [k for k, c in collections.Counter(ids).items() if c > 1] == []
    assert sorted(ids) == list(range(800))
    assert counts(apache_scale, 21) == {0: 0, 1: 0, 2: 800}


def test_api_workers_and_a_live_page_through_several_processes(apache_scale):
    url, n = apache_scale, 3000
    r = requests.post(f"{url}/api/v1/boards", headers=ADMIN, json={"name": "scale"})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    Client(url, "scale", token).push({"key": f"s{i}", "payload": i} for i in range(n))
    updates: list[dict] = []
    finished = threading.Event()
    sio = socketio.Client()

    @sio.on("dashboard")
    def _update(d):
        updates.append(d)
        if d["done"] == n:
            finished.set()

    sio.connect(url, transports=["polling"])
    claimed: list[str] = []

    def work(batch: int) -> None:
        c = Client(url, "scale", token, retry_for=60)
        while jobs := c.claim(0, batch):
            claimed.extend(j.key for j in jobs)
            c.advance(jobs)

    try:
        assert sio.call("join", {"board": "scale"}, timeout=10) == {"ok": True}
        t0 = time.monotonic()
        threads = [threading.Thread(target=work, args=(1 if i < 4 else 20,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        took = time.monotonic() - t0
        assert [k for k, c in collections.Counter(claimed).items() if c > 1] == []
        assert len(claimed) == n
        assert Client(url, "scale", token).status()["counts"] == {2: n}
        # the work went through the API processes, the page is on the live one
        assert finished.wait(15), f"no live update showed the board done: {updates[-1:]}"
        assert sio.transport() == "polling"
        (artifacts_dir() / "apache-scale-run.txt").write_text(
            f"Apache, 3+1 mod_wsgi processes, PostgreSQL + Redis: {n} jobs, 8 API workers "
            f"(4 single, 4 batches of 20): {took:.1f} s = {n / took:.0f} jobs/s; "
            f"{len(updates)} live updates\n")
    finally:
        sio.disconnect()
