"""The app under real Apache 2.4 with Debian's mod_wsgi.

A virtualenv made from /usr/bin/python3 (the interpreter mod_wsgi embeds)
under /var/tmp, readable by www-data, gets a plain `pip install .` of this
checkout; Apache runs wsgi.py in one daemon process with 16 threads.
"""
from __future__ import annotations

import collections
import hashlib
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
import socketio

from tests.conftest import ROOT, artifacts_dir, free_port, require, wait_until_up

from .helpers import counts, push_jobs
from .test_classic_workers import claimed_ids, run_workers

pytestmark = pytest.mark.apache

APACHE = "/usr/sbin/apache2"
MOD_WSGI = "/usr/lib/apache2/modules/mod_wsgi.so"
MODULES = "/usr/lib/apache2/modules"
BASE = Path("/var/tmp/jobserver-apache-test")

CONF = """
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
WSGIDaemonProcess jobserver processes=1 threads=16 python-home={venv} home={site} display-name=jobserver
WSGIProcessGroup jobserver
WSGIApplicationGroup %{{GLOBAL}}
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
            subprocess.run([venv / "bin" / "pip", "install", "-q", str(src)], check=True)
        else:  # the code may have changed since: reinstall just the package
            subprocess.run([venv / "bin" / "pip", "install", "-q", "--no-deps",
                            "--force-reinstall", str(src)], check=True)
    finally:
        shutil.rmtree(src, ignore_errors=True)
    return venv


@pytest.fixture(scope="module")
def apache():
    require(os.path.exists(APACHE), f"{APACHE} is missing (apt-get install apache2)")
    require(os.path.exists(MOD_WSGI), f"{MOD_WSGI} is missing (apt-get install libapache2-mod-wsgi-py3)")
    require(os.geteuid() == 0, "Apache must start as root to switch to www-data")
    require(subprocess.run(["/usr/bin/python3", "-c", "import ensurepip"]).returncode == 0,
            "/usr/bin/python3 cannot make virtualenvs (apt-get install python3-venv)")
    BASE.mkdir(parents=True, exist_ok=True)
    BASE.chmod(0o755)
    venv = _venv()
    site = BASE / f"site-{os.getpid()}"
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
    conf.write_text(CONF.format(port=port, run=run, modules=MODULES, venv=venv, site=site))
    proc = subprocess.Popen([APACHE, "-f", str(conf), "-DFOREGROUND"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc, timeout=60)
        yield url
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
        log = (run / "error.log").read_text() if (run / "error.log").exists() else ""
        (artifacts_dir() / "apache-error.log").write_text(out.decode(errors="replace") + log)
        shutil.rmtree(site, ignore_errors=True)


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
