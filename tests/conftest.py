"""Shared fixtures: a fresh app on a temporary SQLite file, and a real server
on a free port (``live_server``)."""
from __future__ import annotations

import os
import signal
import sqlite3
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
import requests

from jobserver import create_app, wakeup
from jobserver.dialect import close_writer
from jobserver.extensions import db

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip on a developer's machine when a service is missing; fail in CI,
    where .ci/run provides every service."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)


def artifacts_dir() -> Path:
    path = Path(os.environ.get("JOBSERVER_ARTIFACTS", ROOT / "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The admin token of every test server: creating boards over the API needs it.
ADMIN_TOKEN = "test-admin"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

POSTGRES_URL = os.environ.get("JOBSERVER_TEST_POSTGRES",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_available() -> bool:
    try:
        import psycopg

        psycopg.connect(POSTGRES_URL.replace("postgresql+psycopg", "postgresql"),
                        connect_timeout=2).close()
        return True
    except Exception:
        return False


def _fresh_postgres() -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL.replace("postgresql+psycopg", "postgresql"),
                         autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request, tmp_path: Path):
    """A fresh app on a temporary SQLite file, and again on PostgreSQL (the
    scale-out path; a clean schema each time)."""
    if request.param == "postgresql":
        require(_postgres_available(), f"no PostgreSQL at {POSTGRES_URL}")
        _fresh_postgres()
        url = POSTGRES_URL
    else:
        url = f"sqlite:///{tmp_path / 'test.sqlite'}"
    yield from _app_on(url)


def sqlite_at_revision(path: Path, revision: str) -> sqlite3.Connection:
    """A SQLite file migrated up to an older ``revision`` (a database of an
    earlier release), opened for the test to fill."""
    from alembic import command
    from alembic.config import Config

    from jobserver import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    app = create_app({"DATABASE_URL": f"sqlite:///{path}", "SWEEP_MODE": "off",
                      "AUTO_MIGRATE": False})
    with app.app_context():
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
        db.engine.dispose()
    return sqlite3.connect(path)


@pytest.fixture
def postgres_app():
    """A fresh app on PostgreSQL only (what only PostgreSQL does)."""
    require(_postgres_available(), f"no PostgreSQL at {POSTGRES_URL}")
    _fresh_postgres()
    yield from _app_on(POSTGRES_URL)


@pytest.fixture
def sqlite_app(tmp_path: Path):
    """A fresh app on a temporary SQLite file only (SQLite's own behaviour)."""
    yield from _app_on(f"sqlite:///{tmp_path / 'test.sqlite'}")


def _app_on(url: str):
    app = create_app({"DATABASE_URL": url, "SWEEP_MODE": "off", "TESTING": True,
                      "LIVE_INTERVAL": 0.05, "ADMIN_TOKEN": ADMIN_TOKEN})
    with app.app_context():
        yield app
        app.extensions["jobserver_live"].stop()
        wakeup.stop(app)  # its LISTEN connection, if a claim waited on PostgreSQL
        db.session.remove()
        close_writer(db.engine)
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@dataclass
class LiveServer:
    url: str
    port: int
    instance: Path
    proc: subprocess.Popen
    env: dict[str, str] = field(default_factory=dict)
    log: Path | None = None

    @property
    def db_path(self) -> Path:
        return self.instance / "jobserver.sqlite"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def start(self) -> None:
        """(Re)start the server process on the same port and database."""
        self.stop()
        self.proc = _spawn(self.port, self.env, self.log)
        wait_until_up(self.url, self.proc)


def _spawn(port: int, env: dict[str, str], log: Path | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "jobserver", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if log is None:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT, cwd=ROOT)
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def wait_until_up(url: str, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if requests.get(url + "/", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not come up in {timeout} s")


def start_live_server(tmp_path: Path, **settings: str) -> LiveServer:
    port = free_port()
    instance = tmp_path / "instance"
    instance.mkdir(exist_ok=True)
    env = dict(os.environ, JOBSERVER_INSTANCE=str(instance), JOBSERVER_SWEEP_INTERVAL="0.5",
               JOBSERVER_LIVE_INTERVAL="0.25", JOBSERVER_ADMIN_TOKEN=ADMIN_TOKEN)
    env.pop("JOBSERVER_DATABASE_URL", None)
    env.update(settings)
    log = tmp_path / "server.log"
    server = LiveServer(f"http://127.0.0.1:{port}", port, instance, _spawn(port, env, log), env, log)
    wait_until_up(server.url, server.proc)
    return server


@pytest.fixture(params=["sqlite", "postgresql"])
def live_server_both(request, tmp_path: Path) -> Iterator[LiveServer]:
    """The real server on SQLite, and on PostgreSQL (whose text refuses what
    SQLite stores: the same request may fail on one only)."""
    settings = {}
    if request.param == "postgresql":
        require(_postgres_available(), f"no PostgreSQL at {POSTGRES_URL}")
        _fresh_postgres()
        settings["JOBSERVER_DATABASE_URL"] = POSTGRES_URL
    server = start_live_server(tmp_path, **settings)
    yield server
    server.stop()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = start_live_server(tmp_path)
    yield server
    server.stop()
