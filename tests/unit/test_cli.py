"""The `jobserver` command, through click's CliRunner."""
from __future__ import annotations

import json
import time

from click.testing import CliRunner

from jobserver import create_app, lifecycle, queries
from jobserver.cli import main
from jobserver.dialect import close_writer
from jobserver.extensions import db
from jobserver.lifecycle import NewJob


def test_help_explains_commands():
    out = CliRunner().invoke(main, ["--help"]).output
    for cmd in ("serve", "sweep", "db", "config"):
        assert cmd in out
    serve = CliRunner().invoke(main, ["serve", "--help"]).output
    assert "--port" in serve and "eventlet" in serve


def test_sweep_requeues_overdue_jobs(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    monkeypatch.setenv("JOBSERVER_DATABASE_URL", url)
    app = create_app({"SWEEP_MODE": "off"})
    with app.app_context():
        b = lifecycle.ensure_board(5)
        lifecycle.set_lifetimes_if_unset(b.id, [0, 0.001, 0])  # 60 ms at stage 1
        lifecycle.push(b.id, [NewJob("1", "null", 0)])
        lifecycle.claim(b.id, 0)
        close_writer(db.engine)
    time.sleep(0.1)
    result = CliRunner().invoke(main, ["sweep"])
    assert result.exit_code == 0, result.output
    assert "flagged 1, requeued 1, failed 0" in result.output


def test_sweep_uses_the_configured_worker_silence(tmp_path, monkeypatch):
    """A cron sweep (mod_wsgi deployments) loses workers after
    JOBSERVER_WORKER_LOST_AFTER, as the server's own sweeper does."""
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    monkeypatch.setenv("JOBSERVER_DATABASE_URL", url)
    monkeypatch.setenv("JOBSERVER_WORKER_LOST_AFTER", "0.05")
    app = create_app({"SWEEP_MODE": "off"})
    with app.app_context():
        b = lifecycle.create_board("cron", [0, 60, 0])
        lifecycle.push(b.id, [NewJob("1", "null", 0)])
        lifecycle.claim(b.id, 0, worker="w1", lease=True)
        close_writer(db.engine)
    time.sleep(0.1)
    result = CliRunner().invoke(main, ["sweep"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert queries.board_status(b.id)["lost_workers"] == 1
        close_writer(db.engine)


def test_config_prints_settings_without_secret(monkeypatch, tmp_path):
    monkeypatch.setenv("JOBSERVER_DATABASE_URL", f"sqlite:///{tmp_path / 'c.sqlite'}")
    monkeypatch.setenv("JOBSERVER_SECRET_KEY", "s3cret-value")
    monkeypatch.setenv("JOBSERVER_SWEEP_INTERVAL", "7")
    result = CliRunner().invoke(main, ["config"])
    assert result.exit_code == 0
    shown = json.loads(result.output)
    assert shown["SWEEP_INTERVAL"] == 7.0 and "s3cret-value" not in result.output


def test_bad_setting_is_one_line_error(monkeypatch):
    monkeypatch.setenv("JOBSERVER_SWEEP_INTERVAL", "soon")
    result = CliRunner().invoke(main, ["config"])
    assert result.exit_code != 0
    assert "JOBSERVER_SWEEP_INTERVAL" in result.output and "Traceback" not in result.output


def test_db_upgrade_creates_schema(monkeypatch, tmp_path):
    path = tmp_path / "fresh.sqlite"
    monkeypatch.setenv("JOBSERVER_DATABASE_URL", f"sqlite:///{path}")
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    import sqlite3

    tables = {r[0] for r in sqlite3.connect(path).execute("select name from sqlite_master")}
    assert {"boards", "jobs", "attempts", "events", "stages", "alembic_version"} <= tables
